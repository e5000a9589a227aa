"""Settings of the compatibility receivers (the ``receivers`` section)."""

from __future__ import annotations

import pydantic

__all__ = ["ReceiversConfig"]


class ReceiversConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
