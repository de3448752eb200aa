"""The service's table: an ``Agent`` (a SQLModel table)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Column, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


def _now() -> datetime:
    return datetime.now(timezone.utc)


class AgentCreate(SQLModel):
    """What a client sends to create an agent."""

    name: str = Field(index=True, max_length=200)
    description: str | None = None
    config: dict[str, Any] = Field(default_factory=dict, sa_type=JSONB)


class Agent(AgentCreate, table=True):
    """An agent row."""

    __tablename__ = "agents"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    created_at: datetime = Field(
        default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
