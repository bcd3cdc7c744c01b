"""Every change to a run goes through a function here; each records its events."""
