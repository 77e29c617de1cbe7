"""Tables, the database engine, repository functions, the audit chain and migrations."""
