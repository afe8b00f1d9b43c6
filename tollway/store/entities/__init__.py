"""Entities: their schemas (plain data), validation, DAOs and generic CRUD, for every caller.

  schema.py       EntitySchema: fields, table, keys, hooks
  validation.py   checks data against fields and collects every problem
  dao.py          rows of one entity's table, and the queries CRUD needs
  crud.py         create, read, update, upsert, delete and list one entity (typed errors)
  catalog.py      the entities of one configuration (core + enabled plugins), with their DAOs
  services.py, routes.py, consumers.py, plugins.py: the core entities

Errors are tollway.errors' EntityError subclasses; the Admin API translates them to Kong's shapes.
"""
