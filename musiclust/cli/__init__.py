"""The command line's commands, one module per family; ``musiclust/__main__.py`` parses and dispatches."""
