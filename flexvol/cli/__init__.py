"""The operator toolkit's command line (typer + rich). The library never imports this package."""
