"""Conveyor: an asyncio job queue with SAQ's API."""
