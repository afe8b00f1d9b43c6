"""The Kong-compatible Admin API: `tollway.admin.app.create_app(settings, db, on_change=None)`."""
