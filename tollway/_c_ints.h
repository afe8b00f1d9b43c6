/* What tollway's C modules share: a Python int read as int64. */
#ifndef TOLLWAY_C_INTS_H
#define TOLLWAY_C_INTS_H

#include <Python.h>
#include <stdint.h>

/* `number` as an int64, saturated (a limit beyond 2**63 is no limit): 0, or -1 with an error set. */
static inline int as_int64(PyObject *number, int64_t *out) {
    int overflow = 0;
    long long value = PyLong_AsLongLongAndOverflow(number, &overflow);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    *out = overflow > 0 ? INT64_MAX : overflow < 0 ? INT64_MIN : (int64_t)value;
    return 0;
}

#endif
