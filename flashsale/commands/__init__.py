"""One module per ``flashsale`` command that runs an engine or builds a report.

Each module defines one typer-annotated function; ``flashsale.cli`` registers it.
"""
