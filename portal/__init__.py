"""The Parvis portal (Flask). Today a placeholder that the gateway's interception lands on;
the splash pages, the RFC 8908 API and the console arrive with the portal issue."""

from __future__ import annotations

from flask import Flask, Response


def create_app(config: dict[str, object] | None = None) -> Flask:
    """Build the portal application (one per test, one per worker)."""
    app = Flask(__name__)
    app.config.update(config or {})

    @app.route("/", defaults={"path": ""})
    @app.route("/<path:path>")
    def placeholder(path: str) -> Response:
        body = ("<!doctype html><html lang=fr><meta charset=utf-8><title>Parvis</title>"
                "<h1>Wi-Fi public — Parvis</h1><p>Portail captif (parvis-portal).</p>")
        response = Response(body, status=200, mimetype="text/html")
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Parvis-Portal"] = "1"
        return response

    return app
