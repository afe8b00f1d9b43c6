/* The shared counter table's operations, under a lock that costs no system call.
 *
 * tollway/counters.py owns the table (its file, layout and meaning); this module maps the file
 * and runs the two operations a call needs, add and get, under a process-shared, robust
 * pthread mutex kept in the file's header. Uncontended, taking and releasing it is one atomic
 * instruction each, in user space: no flock, no system call on the proxy's hot path. A worker
 * killed while it holds the mutex (kill -9) does not block the others: the kernel marks the
 * mutex as its owner's death releases it (robust futex), and the next taker makes it consistent
 * and goes on.
 *
 * Layout (int64 words): header of HEADER_WORDS (magic, slot count, reserved; the mutex at byte
 * LOCK_OFFSET), then `slots` slots of four words: digest high, digest low, window end, count.
 * The probing is counters.py's: a key lives within PROBES slots of its home slot,
 * (high ^ low) mod slots, an insertion takes the first free slot there, and a never-used slot
 * ends a lookup.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_c_ints.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define HEADER_WORDS 16
#define LOCK_OFFSET 64
#define WORDS 4
#define PROBES 32
#define MAX_KEYS 64

_Static_assert(sizeof(pthread_mutex_t) <= HEADER_WORDS * 8 - LOCK_OFFSET, "the mutex fits the header");

typedef struct {
    PyObject_HEAD
    int64_t *words;         /* the mapping, NULL once closed */
    size_t size;            /* its bytes */
    int64_t slots;
} Table;

static pthread_mutex_t *table_lock(Table *self) {
    return (pthread_mutex_t *)((char *)self->words + LOCK_OFFSET);
}

/* Take the table's mutex: 0, or -1 with a Python error set. */
static int lock(Table *self) {
    int rc = pthread_mutex_lock(table_lock(self));
    if (rc == EOWNERDEAD) {  /* its holder died holding it: what it left half-done is a count or two */
        rc = pthread_mutex_consistent(table_lock(self));
    }
    if (rc != 0) {
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

static void unlock(Table *self) {
    pthread_mutex_unlock(table_lock(self));
}

static int64_t home_of(Table *self, int64_t high, int64_t low) {
    int64_t home = (high ^ low) % self->slots;
    return home < 0 ? home + self->slots : home;  /* Python's modulo: never negative */
}

/* The word index of the key's slot for the window ending at `end`, the slot taken (count 0) when
 * it has none; -1 when no slot is free within PROBES. A slot of the key's from an earlier window
 * starts this one; a slot in a later window than the caller's is counted in. Called locked. */
static int64_t find(Table *self, int64_t high, int64_t low, int64_t end, int64_t now) {
    int64_t *words = self->words;
    int64_t home = home_of(self, high, low);
    int64_t free_slot = -1;
    for (int64_t probe = 0; probe < PROBES; probe++) {
        int64_t slot = HEADER_WORDS + ((home + probe) % self->slots) * WORDS;
        int64_t *w = words + slot;
        if (w[0] == high && w[1] == low) {
            if (w[2] < end) {
                w[2] = end;
                w[3] = 0;
            }
            return slot;
        }
        if (w[0] == 0 && w[1] == 0) {
            if (free_slot < 0) {
                free_slot = slot;
            }
            break;  /* never used: the key cannot be further on */
        }
        if (free_slot < 0 && w[2] <= now) {
            free_slot = slot;
        }
    }
    if (free_slot < 0) {
        return -1;
    }
    int64_t *w = words + free_slot;
    w[2] = end;
    w[3] = 0;
    w[1] = low;
    w[0] = high;
    return free_slot;
}

static int key_of(PyObject *key, int64_t *high, int64_t *low) {
    if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) != 2) {
        PyErr_SetString(PyExc_TypeError, "a counter key is a (high, low) tuple");
        return -1;
    }
    if (as_int64(PyTuple_GET_ITEM(key, 0), high) < 0 || as_int64(PyTuple_GET_ITEM(key, 1), low) < 0) {
        return -1;
    }
    if (*high == 0 && *low == 0) {
        PyErr_SetString(PyExc_ValueError, "a counter key is never (0, 0)");
        return -1;
    }
    return 0;
}

static int check_open(Table *self) {
    if (self->words == NULL) {
        PyErr_SetString(PyExc_ValueError, "the shared counter table is closed");
        return -1;
    }
    return 0;
}

static int Table_init(Table *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"fd", "slots", NULL};
    int fd;
    long long slots;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iL", names, &fd, &slots)) {
        return -1;
    }
    if (slots < PROBES || slots > (INT64_MAX / 8 - HEADER_WORDS) / WORDS) {
        PyErr_Format(PyExc_ValueError, "a shared counter table needs %d slots or more", PROBES);
        return -1;
    }
    if (self->words != NULL) {
        PyErr_SetString(PyExc_ValueError, "the table is already mapped");
        return -1;
    }
    size_t size = (size_t)(HEADER_WORDS + slots * WORDS) * 8;
    void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->words = map;
    self->size = size;
    self->slots = slots;
    return 0;
}

static PyObject *Table_close(Table *self, PyObject *Py_UNUSED(ignored)) {
    if (self->words != NULL) {
        munmap(self->words, self->size);
        self->words = NULL;
    }
    Py_RETURN_NONE;
}

static void Table_dealloc(Table *self) {
    if (self->words != NULL) {
        munmap(self->words, self->size);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Table_reset_lock(Table *self, PyObject *Py_UNUSED(ignored)) {
    if (check_open(self) < 0) {
        return NULL;
    }
    pthread_mutexattr_t attributes;
    pthread_mutexattr_init(&attributes);
    pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
    memset(table_lock(self), 0, sizeof(pthread_mutex_t));
    int rc = pthread_mutex_init(table_lock(self), &attributes);
    pthread_mutexattr_destroy(&attributes);
    if (rc != 0) {
        errno = rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

/* add(keys, window_ends, limits, cost, now): (added, counts after) or None when a key has no slot. */
static PyObject *Table_add(Table *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "add(keys, window_ends, limits, cost, now)");
        return NULL;
    }
    PyObject *keys = args[0], *ends = args[1], *limits = args[2];
    if (!PyList_Check(keys) || !PyList_Check(ends) || !PyList_Check(limits)) {
        PyErr_SetString(PyExc_TypeError, "keys, window_ends and limits are lists");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(keys);
    if (PyList_GET_SIZE(ends) != n || PyList_GET_SIZE(limits) != n || n > MAX_KEYS) {
        PyErr_Format(PyExc_ValueError, "as many keys, window ends and limits, %d at most", MAX_KEYS);
        return NULL;
    }
    int64_t highs[MAX_KEYS], lows[MAX_KEYS], window_ends[MAX_KEYS], caps[MAX_KEYS], counts[MAX_KEYS];
    int64_t slots[MAX_KEYS];
    int64_t cost, now;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (key_of(PyList_GET_ITEM(keys, i), &highs[i], &lows[i]) < 0
                || as_int64(PyList_GET_ITEM(ends, i), &window_ends[i]) < 0
                || as_int64(PyList_GET_ITEM(limits, i), &caps[i]) < 0) {
            return NULL;
        }
    }
    if (as_int64(args[3], &cost) < 0 || as_int64(args[4], &now) < 0 || check_open(self) < 0) {
        return NULL;
    }
    if (lock(self) < 0) {
        return NULL;
    }
    int added = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        slots[i] = find(self, highs[i], lows[i], window_ends[i], now);
        if (slots[i] < 0) {
            unlock(self);
            Py_RETURN_NONE;
        }
        counts[i] = self->words[slots[i] + 3];
        if (counts[i] > caps[i] - cost) {  /* count + cost > limit, without overflowing */
            added = 0;
        }
    }
    if (added) {
        for (Py_ssize_t i = 0; i < n; i++) {
            counts[i] += cost;
            self->words[slots[i] + 3] = counts[i];
        }
    }
    unlock(self);
    PyObject *after = PyList_New(n);
    if (after == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *count = PyLong_FromLongLong(counts[i]);
        if (count == NULL) {
            Py_DECREF(after);
            return NULL;
        }
        PyList_SET_ITEM(after, i, count);
    }
    PyObject *result = PyTuple_New(2);
    if (result == NULL) {
        Py_DECREF(after);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, PyBool_FromLong(added));
    PyTuple_SET_ITEM(result, 1, after);
    return result;
}

/* get(key, window_end): the key's count in that window (or a later one), 0 when it has none. */
static PyObject *Table_get(Table *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t high, low, end;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "get(key, window_end)");
        return NULL;
    }
    if (key_of(args[0], &high, &low) < 0 || as_int64(args[1], &end) < 0 || check_open(self) < 0) {
        return NULL;
    }
    if (lock(self) < 0) {
        return NULL;
    }
    int64_t count = 0;
    int64_t home = home_of(self, high, low);
    for (int64_t probe = 0; probe < PROBES; probe++) {
        int64_t *w = self->words + HEADER_WORDS + ((home + probe) % self->slots) * WORDS;
        if (w[0] == high && w[1] == low) {
            count = w[2] >= end ? w[3] : 0;
            break;
        }
        if (w[0] == 0 && w[1] == 0) {
            break;
        }
    }
    unlock(self);
    return PyLong_FromLongLong(count);
}

/* lock() and unlock(): hold the table still (a test kills a holder to see the others go on). */
static PyObject *Table_lock(Table *self, PyObject *Py_UNUSED(ignored)) {
    if (check_open(self) < 0 || lock(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Table_unlock(Table *self, PyObject *Py_UNUSED(ignored)) {
    if (check_open(self) < 0) {
        return NULL;
    }
    unlock(self);
    Py_RETURN_NONE;
}

static PyMethodDef Table_methods[] = {
    {"add", (PyCFunction)(void (*)(void))Table_add, METH_FASTCALL,
     "add(keys, window_ends, limits, cost, now): (added, counts after), or None when a key finds no slot"},
    {"get", (PyCFunction)(void (*)(void))Table_get, METH_FASTCALL,
     "get(key, window_end): the count in that window, 0 when none"},
    {"reset_lock", (PyCFunction)Table_reset_lock, METH_NOARGS,
     "make the table's mutex anew (only while no other process uses the table)"},
    {"lock", (PyCFunction)Table_lock, METH_NOARGS, "take the table's mutex"},
    {"unlock", (PyCFunction)Table_unlock, METH_NOARGS, "release the table's mutex"},
    {"close", (PyCFunction)Table_close, METH_NOARGS, "unmap the table"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tollway._counters.Table",
    .tp_doc = "Table(fd, slots): the shared counter table in the file `fd`, mapped",
    .tp_basicsize = sizeof(Table),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Table_init,
    .tp_dealloc = (destructor)Table_dealloc,
    .tp_methods = Table_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tollway._counters",
    .m_doc = "The shared counter table's add and get, under a robust process-shared mutex.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__counters(void) {
    if (PyType_Ready(&TableType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "HEADER_WORDS", HEADER_WORDS) < 0
            || PyModule_AddIntConstant(m, "PROBES", PROBES) < 0
            || PyModule_AddIntConstant(m, "MAX_KEYS", MAX_KEYS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&TableType);
    if (PyModule_AddObject(m, "Table", (PyObject *)&TableType) < 0) {
        Py_DECREF(&TableType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
