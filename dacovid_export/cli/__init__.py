"""Click commands: each parses options and calls one public library function. Nothing imports this package."""
