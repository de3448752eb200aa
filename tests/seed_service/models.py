"""The seed-shaped service's table (a name of its own: SQLModel's metadata is shared with
the example service's models in the same test process)."""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class SeedAgent(SQLModel, table=True):
    __tablename__ = "seed_agents"

    id: int | None = Field(default=None, primary_key=True)
    name: str
