"""Litestar on PostgreSQL: tasks from two modules' registries, demo endpoints, a daily cron."""
