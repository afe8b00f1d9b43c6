"""Kong's declarative configuration: one file (YAML or JSON) that holds a whole configuration.

  fileformat.py   reading and writing the file, and its metadata keys (`_format_version`, ...)
  problems.py     what is wrong with a file, as a tree rendered the way Kong prints it
  flatten.py      nested entities flattened, references resolved, ids given, each one validated
  load.py         `db_import`: every entity of a file written in one transaction
  dump.py         `db_export`: every entity, flat, as Kong's export writes them
  cli.py          `tollway config init | parse | db_import | db_export`

The format is Kong's `_format_version: "3.0"` (1.1 and 2.1 files are read too): one array per
entity, named as the entity (`services`, `routes`, `consumers`, `plugins`,
`keyauth_credentials`, `acls`), children nested in their parents (`services[].routes[]`,
`consumers[].keyauth_credentials[]`, ...) and references given as an id or a name.
"""
