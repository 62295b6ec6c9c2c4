"""Storage URLs as messages and records show them."""

from __future__ import annotations


def display_url(url: str) -> str:
    """The URL as messages show it: any password masked."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - malformed: shown as given
        return url
    return parsed.render_as_string(hide_password=True) if parsed.password else url
