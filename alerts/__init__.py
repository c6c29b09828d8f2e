"""alerts (skeleton; see the issues that build it)."""

from __future__ import annotations

__all__: list[str] = []
