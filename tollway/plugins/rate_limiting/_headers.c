/* rate-limiting's response header lines for one call, built in one C call.
 *
 * handler.py's Handler.header_block() in C, for the proxy's hot path: the same lines as
 * Handler.python_block() (tests/plugins/test_rate_limiting_handler.py compares both with
 * limit_headers()). Every call's lines differ (what remains changes each call), and in compiled
 * Python building them was a third of the plugin's cost: formatting each count, a tuple per
 * header, a list and a join. The (name, value) pairs are not built: the proxy reads them back from
 * the lines when a plugin asks for the response's headers (HeaderBlock.items()).
 *
 * block(layout, limits, counts, ends, now, rejected) -> lines
 *   layout: (limit_lines, remaining_starts, tightest_lines), one entry per configured period,
 *           made once by the handler;
 *   lines:  X-RateLimit-Limit-<P> and -Remaining-<P> for each period, then RateLimit-Limit,
 *           -Remaining, -Reset of the tightest (least remaining; on a tie the later period), and
 *           Retry-After (its reset) when rejected, joined.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../../_c_ints.h"

#include <stdint.h>
#include <string.h>

#define MAX_PERIODS 6
#define LINES_MAX 2048

static const char REMAINING_START[] = "RateLimit-Remaining: ";
static const char RESET_START[] = "RateLimit-Reset: ";
static const char RETRY_START[] = "Retry-After: ";

/* A count's decimal digits into `out` (24 bytes); their number. (snprintf costs ten times this.) */
static int digits_of(int64_t number, char *out) {
    char reversed[24];
    int size = 0;
    uint64_t rest = number < 0 ? (uint64_t)0 - (uint64_t)number : (uint64_t)number;
    do {
        reversed[size++] = (char)('0' + rest % 10);
        rest /= 10;
    } while (rest != 0);
    int at = 0;
    if (number < 0) {
        out[at++] = '-';
    }
    while (size > 0) {
        out[at++] = reversed[--size];
    }
    return at;
}

/* Append `size` bytes to the lines being built; 0, or -1 with an error when they do not fit. */
static int put(char *lines, Py_ssize_t *at, const char *data, Py_ssize_t size) {
    if (*at + size > LINES_MAX) {
        PyErr_SetString(PyExc_ValueError, "rate-limiting's header lines are too long");
        return -1;
    }
    memcpy(lines + *at, data, (size_t)size);
    *at += size;
    return 0;
}

static int put_bytes(char *lines, Py_ssize_t *at, PyObject *bytes) {
    if (!PyBytes_Check(bytes)) {
        PyErr_SetString(PyExc_TypeError, "a header name or line is bytes");
        return -1;
    }
    return put(lines, at, PyBytes_AS_STRING(bytes), PyBytes_GET_SIZE(bytes));
}

static PyObject *block(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6 || !PyTuple_Check(args[0]) || PyTuple_GET_SIZE(args[0]) != 3 || !PyList_Check(args[1])
            || !PyList_Check(args[2]) || !PyList_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "block(layout, limits, counts, ends, now, rejected)");
        return NULL;
    }
    PyObject *layout = args[0];
    PyObject *limit_lines = PyTuple_GET_ITEM(layout, 0), *remaining_starts = PyTuple_GET_ITEM(layout, 1);
    PyObject *tightest_lines = PyTuple_GET_ITEM(layout, 2);
    Py_ssize_t n = PyList_GET_SIZE(args[1]);
    if (n < 1 || n > MAX_PERIODS || PyList_GET_SIZE(args[2]) != n || PyList_GET_SIZE(args[3]) != n
            || !PyList_Check(limit_lines) || !PyList_Check(remaining_starts) || !PyList_Check(tightest_lines)
            || PyList_GET_SIZE(limit_lines) != n || PyList_GET_SIZE(remaining_starts) != n
            || PyList_GET_SIZE(tightest_lines) != n) {
        PyErr_SetString(PyExc_ValueError, "block(): one limit, count, end and layout entry per period");
        return NULL;
    }
    int64_t now, left[MAX_PERIODS];
    if (as_int64(args[4], &now) < 0) {
        return NULL;
    }
    int rejected = PyObject_IsTrue(args[5]);
    if (rejected < 0) {
        return NULL;
    }
    Py_ssize_t tightest = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t limit, count;
        if (as_int64(PyList_GET_ITEM(args[1], i), &limit) < 0 || as_int64(PyList_GET_ITEM(args[2], i), &count) < 0) {
            return NULL;
        }
        left[i] = count >= limit ? 0 : limit - count;
        if (tightest < 0 || left[i] <= left[tightest]) {  /* on a tie, the later period: the longer window */
            tightest = i;
        }
    }
    int64_t end;
    if (as_int64(PyList_GET_ITEM(args[3], tightest), &end) < 0) {
        return NULL;
    }
    int64_t reset = end - now < 1 ? 1 : end - now;

    char lines[LINES_MAX], digits[24];
    Py_ssize_t at = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int size = digits_of(left[i], digits);
        if (put_bytes(lines, &at, PyList_GET_ITEM(limit_lines, i)) < 0
                || put_bytes(lines, &at, PyList_GET_ITEM(remaining_starts, i)) < 0
                || put(lines, &at, digits, size) < 0 || put(lines, &at, "\r\n", 2) < 0) {
            return NULL;
        }
    }
    int size = digits_of(left[tightest], digits);
    if (put_bytes(lines, &at, PyList_GET_ITEM(tightest_lines, tightest)) < 0
            || put(lines, &at, REMAINING_START, sizeof REMAINING_START - 1) < 0 || put(lines, &at, digits, size) < 0
            || put(lines, &at, "\r\n", 2) < 0) {
        return NULL;
    }
    size = digits_of(reset, digits);
    if (put(lines, &at, RESET_START, sizeof RESET_START - 1) < 0 || put(lines, &at, digits, size) < 0
            || put(lines, &at, "\r\n", 2) < 0) {
        return NULL;
    }
    if (rejected && (put(lines, &at, RETRY_START, sizeof RETRY_START - 1) < 0 || put(lines, &at, digits, size) < 0
                     || put(lines, &at, "\r\n", 2) < 0)) {
        return NULL;
    }
    return PyBytes_FromStringAndSize(lines, at);
}

static PyMethodDef methods[] = {
    {"block", (PyCFunction)(void (*)(void))block, METH_FASTCALL,
     "block(layout, limits, counts, ends, now, rejected) -> lines"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tollway.plugins.rate_limiting._headers",
    .m_doc = "rate-limiting's response header lines for one call, built in one C call.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__headers(void) {
    return PyModule_Create(&module);
}
