"""The console: the admin pages and commands that span apps (dashboard, demo data, export/import, change history)."""
