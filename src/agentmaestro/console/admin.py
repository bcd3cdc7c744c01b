from django.contrib import admin

admin.site.site_header = "AgentMaestro administration"
admin.site.site_title = "AgentMaestro admin"
admin.site.index_title = "Control plane"
# "View site" in the admin's header leads to the console.
admin.site.site_url = "/"
