"""The benchmark harness: Tollway against nginx on loopback, measured in one interleaved run.

Modules, from the bottom up:

- `tools`: finding nginx and wrk, free loopback ports, waiting for a listener.
- `machine`: what the numbers were measured on.
- `nginx`: an nginx instance in its own temp prefix, as the `return 200` upstream or as a
  keep-alive `proxy_pass` to it.
- `tollway_node`: a Tollway node in its own prefix, started and stopped with the `tollway` CLI and
  configured through its Admin API like the seed.
- `targets`: the configurations under test behind one small interface.
- `wrk`: closed-loop throughput with wrk and a Lua `done` script that prints JSON.
- `openloop`: a constant-rate, open-loop generator (wrk2-style) for latency at a fixed rate.
- `rss`: peak resident set size per process, sampled during a run.
- `runner`: the interleaved rounds and the summary; `report`, `chart`: latest.md and latest.png;
  `ledger_hook`: the optional `--report-bench` hook.
"""
