"""Pieces every section shares: the report writer, the result store."""
