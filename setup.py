"""Builds Tollway. The proxy's per-request modules are compiled to C with mypyc.

Those modules are plain, type-checked Python: compiling them changes no behaviour, only their
speed (about twice as fast per request; see the README's Performance section). Set
TOLLWAY_PURE_PYTHON=1 to build without compiling, for a machine that has no C compiler.

The C compiler runs on every core, and only on the C files that changed since the last build:
their objects are kept in build/temp (`rm -rf build` starts afresh).
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# Everything a proxied request runs through, and the flusher's per-record loop (aggregate.py);
# nothing else (the Admin API, the store and the rest of the flusher stay interpreted: they are
# not per request).
HOT_PATH = [
    "tollway/proxy/access_log.py",
    "tollway/proxy/call.py",
    "tollway/proxy/chain.py",
    "tollway/proxy/connection.py",
    "tollway/proxy/exchange.py",
    "tollway/proxy/headers.py",
    "tollway/proxy/protocol.py",
    "tollway/proxy/request_head.py",
    "tollway/proxy/request_repeat.py",
    "tollway/proxy/response_repeat.py",
    "tollway/proxy/response_writer.py",
    "tollway/proxy/responses.py",
    "tollway/proxy/router.py",
    "tollway/proxy/server.py",
    "tollway/proxy/state.py",
    "tollway/proxy/tunnel.py",
    "tollway/proxy/upstream.py",
    "tollway/proxy/upstream_connection.py",
    "tollway/proxy/upstream_target.py",
    "tollway/plugins/base.py",
    "tollway/plugins/acl/handler.py",
    "tollway/plugins/billable/handler.py",
    "tollway/plugins/key_auth/handler.py",
    "tollway/plugins/key_auth/keys.py",
    "tollway/plugins/rate_limiting/handler.py",
    "tollway/plugins/rate_limiting/local.py",
    "tollway/plugins/rate_limiting/redis_client.py",
    "tollway/plugins/rate_limiting/redis_policy.py",
    "tollway/plugins/rate_limiting/windows.py",
    "tollway/counters.py",
    "tollway/plugins/prometheus/handler.py",
    "tollway/plugins/prometheus/recorder.py",
    "tollway/metering/aggregate.py",
    "tollway/metering/latency.py",
    "tollway/metering/spool_line.py",
    "tollway/metering/spool.py",
]

# Written in C, not compiled from Python: the shared counters' operations, under a lock that a
# compiled Python module cannot take without a system call (tollway/_counters.c), and
# rate-limiting's response headers, which compiled Python builds at a third of the plugin's cost.
C_MODULES = [Extension("tollway._counters", ["tollway/_counters.c"], depends=["tollway/_c_ints.h"],
                       libraries=["pthread"]),
             Extension("tollway.plugins.rate_limiting._headers", ["tollway/plugins/rate_limiting/_headers.c"],
                       depends=["tollway/_c_ints.h"])]

OBJECTS_DIR = os.path.join("build", "temp")
JOBS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def compiled_modules() -> list:
    if os.environ.get("TOLLWAY_PURE_PYTHON") or _metadata_only():
        return []
    from mypyc.build import mypycify

    # multi_file: one C file per module (and the runtime's own files), so that the compiler can
    # work on them in parallel and skip those that did not change.
    return [*mypycify(HOT_PATH, opt_level="3", group_name="tollway_hot_path", multi_file=True), *C_MODULES]


def _metadata_only() -> bool:
    """Whether setuptools only asks for the package's metadata (pip does first): no need to run mypyc."""
    return len(sys.argv) > 1 and sys.argv[1] in ("egg_info", "dist_info")


class IncrementalBuildExt(build_ext):
    """build_ext that compiles C files on every core and skips those whose object is up to date."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.build_temp = OBJECTS_DIR  # kept between builds, also those pip runs in a build environment
        self.parallel = JOBS  # extensions side by side; compile_parallel runs at most JOBS compilers

    def build_extensions(self) -> None:
        self._forget_objects_of_another_toolchain()
        compiler = self.compiler
        sources = [(source, obj, ext.depends) for ext in self.extensions for source, obj in
                   zip(ext.sources, compiler.object_filenames(ext.sources, output_dir=self.build_temp), strict=True)]
        stale = sum(1 for source, obj, depends in sources if not _up_to_date(obj, [source, *depends]))
        _say(f"{stale} of {len(sources)} C files changed since the last build: compiling them, {JOBS} at a time")
        compilers = threading.BoundedSemaphore(JOBS)
        compiled = [0]
        lock = threading.Lock()

        def compile_parallel(sources: list[str], output_dir: str | None = None, macros: Any = None,
                             include_dirs: Any = None, debug: Any = 0, extra_preargs: Any = None,
                             extra_postargs: Any = None, depends: Any = None) -> list[str]:
            macros, objects, extra_postargs, pp_opts, build = compiler._setup_compile(
                output_dir, macros, include_dirs, sources, depends, extra_postargs)
            cc_args = compiler._get_cc_args(pp_opts, debug, extra_preargs)

            def compile_one(obj: str) -> None:
                source, ext = build[obj]
                if _up_to_date(obj, [source, *(depends or [])]):
                    return
                with compilers:
                    compiler._compile(obj, source, ext, cc_args, extra_postargs, pp_opts)
                with lock:
                    compiled[0] += 1
                    _say(f"[{compiled[0]}/{stale}] compiled {source}")

            with ThreadPoolExecutor(JOBS) as pool:
                list(pool.map(compile_one, [obj for obj in objects if obj in build]))
            return list(objects)

        compiler.compile = compile_parallel
        super().build_extensions()

    def _forget_objects_of_another_toolchain(self) -> None:
        """Objects built by another mypy, Python or compiler are not reused: start afresh then."""
        import mypy.version

        stamp = os.path.join(OBJECTS_DIR, "toolchain")
        toolchain = f"{sys.version} mypy {mypy.version.__version__} {self.compiler.compiler_so}\n"
        try:
            with open(stamp) as file:
                same = file.read() == toolchain
        except OSError:
            same = False
        if not same:
            import shutil

            shutil.rmtree(OBJECTS_DIR, ignore_errors=True)
            os.makedirs(OBJECTS_DIR, exist_ok=True)
            with open(stamp, "w") as file:
                file.write(toolchain)


def _up_to_date(obj: str, inputs: list[str]) -> bool:
    try:
        built = os.stat(obj).st_mtime
        return all(os.stat(path).st_mtime <= built for path in inputs)
    except OSError:
        return False


def _say(message: str) -> None:
    """A line on stderr: pip shows it with -v, and scripts/progress.py reads it there."""
    sys.stderr.write(f"tollway build: {message}\n")  # one write: the compile threads' lines stay whole
    sys.stderr.flush()


setup(ext_modules=compiled_modules(), cmdclass={"build_ext": IncrementalBuildExt})
