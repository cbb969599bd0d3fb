"""FastAPI on SQLite: trigger and status endpoints, progress, a console behind the app's users."""
