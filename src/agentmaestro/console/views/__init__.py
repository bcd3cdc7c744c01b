"""The console's pages: server-rendered templates; live parts follow the WebSockets."""
