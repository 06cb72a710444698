"""One job of a run worked out once (resolve), rendered (jinja2) and repeated."""
