/* loop.c: asyncio glue: readiness callbacks, futures and deadlines, the descriptors
   the loop polls for libpq's sockets. */
#include "loop.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

double agentdb_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

PyObject *agentdb_running_loop(agentdb_state *st)
{
    return PyObject_CallNoArgs(st->get_running_loop);
}

/* A new AgentFuture on `loop` whose cancel() reports to `owner`.  The base
   initializer runs in C: creating one costs no Python frame. */
PyObject *agentdb_future_new(agentdb_state *st, PyObject *loop, PyObject *owner)
{
    if (st->future_class == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "agentdb._core used before agentdb was imported");
        return NULL;
    }
    PyObject *args[1] = {loop};
    PyObject *fut = PyObject_Vectorcall(st->future_class, args, 0, st->kwnames_loop);
    if (fut == NULL) {
        return NULL;
    }
    if (owner != NULL && PyObject_SetAttr(fut, st->str_owner, owner) < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

/* 1 => done, 0 => pending, -1 => error set. */
int agentdb_future_done(agentdb_state *st, PyObject *fut)
{
    PyObject *r = PyObject_CallMethodNoArgs(fut, st->str_done);
    if (r == NULL) {
        return -1;
    }
    int done = PyObject_IsTrue(r);
    Py_DECREF(r);
    return done;
}

int agentdb_future_set_result(agentdb_state *st, PyObject *fut, PyObject *value)
{
    int done = agentdb_future_done(st, fut);
    if (done != 0) {
        return done < 0 ? -1 : 0;
    }
    PyObject *r = PyObject_CallMethodOneArg(fut, st->str_set_result, value);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

int agentdb_future_set_exception(agentdb_state *st, PyObject *fut, PyObject *exc)
{
    int done = agentdb_future_done(st, fut);
    if (done != 0) {
        return done < 0 ? -1 : 0;
    }
    PyObject *r = PyObject_CallMethodOneArg(fut, st->str_set_exception, exc);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

PyObject *agentdb_call_later(agentdb_state *st, PyObject *loop, double delay, PyObject *cb,
                             PyObject *arg)
{
    (void)st;
    if (delay < 0) {
        delay = 0;
    }
    return PyObject_CallMethod(loop, "call_later", "dOO", delay, cb, arg);
}

void agentdb_timer_cancel(agentdb_state *st, PyObject **handle)
{
    if (*handle == NULL) {
        return;
    }
    PyObject *r = PyObject_CallMethodNoArgs(*handle, st->str_cancel);
    if (r == NULL) {
        PyErr_Clear();
    }
    Py_XDECREF(r);
    Py_CLEAR(*handle);
}

/* IOHandle: the callable the loop holds for a connection's socket and timers.
   It points at its target without owning it, so the loop does not keep a
   dropped connection alive; the target detaches it when it goes away. */
typedef struct {
    PyObject_HEAD
    PyObject *target; /* borrowed; NULL once detached */
    agentdb_io_fn fn;
} agentdb_IOHandle;

PyObject *agentdb_iohandle_new(agentdb_state *st, PyObject *target, agentdb_io_fn fn)
{
    agentdb_IOHandle *h = PyObject_New(agentdb_IOHandle, st->IOHandleType);
    if (h == NULL) {
        return NULL;
    }
    h->target = target;
    h->fn = fn;
    return (PyObject *)h;
}

void agentdb_iohandle_detach(PyObject *handle)
{
    if (handle != NULL) {
        ((agentdb_IOHandle *)handle)->target = NULL;
    }
}

static PyObject *iohandle_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)kwargs;
    agentdb_IOHandle *h = (agentdb_IOHandle *)self;
    PyObject *arg = PyTuple_GET_SIZE(args) > 0 ? PyTuple_GET_ITEM(args, 0) : Py_None;
    if (h->target != NULL) {
        PyObject *target = h->target;
        Py_INCREF(target); /* the callback may drop the last other reference */
        h->fn(target, arg);
        Py_DECREF(target);
        if (PyErr_Occurred()) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

static void iohandle_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_Free(self);
    Py_DECREF(tp);
}

static PyType_Slot iohandle_slots[] = {
    {Py_tp_call, iohandle_call},
    {Py_tp_dealloc, iohandle_dealloc},
    {Py_tp_doc, "A loop callback bound weakly to an agentdb connection (internal)."},
    {0, NULL},
};

static PyType_Spec iohandle_spec = {
    .name = "agentdb._core._IOHandle",
    .basicsize = sizeof(agentdb_IOHandle),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = iohandle_slots,
};

void agentdb_fdwatch_init(agentdb_fdwatch *w)
{
    w->fd = w->src = w->reader = w->writer = -1;
}

/* Our duplicate of `sock` (a new one when libpq's socket changed). -1 => error set. */
static int fdwatch_fd(agentdb_fdwatch *w, int sock)
{
    if (w->fd >= 0 && w->src == sock) {
        return w->fd;
    }
    int fd = fcntl(sock, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    w->fd = fd;
    w->src = sock;
    return fd;
}

int agentdb_fdwatch_read(agentdb_fdwatch *w, PyObject *loop, int sock, PyObject *cb)
{
    int fd = fdwatch_fd(w, sock);
    if (fd < 0) {
        return -1;
    }
    if (w->reader == fd) {
        return 0;
    }
    PyObject *r = PyObject_CallMethod(loop, "add_reader", "iO", fd, cb);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    w->reader = fd;
    return 0;
}

int agentdb_fdwatch_write(agentdb_fdwatch *w, PyObject *loop, int sock, int on, PyObject *cb)
{
    if (on && w->writer < 0) {
        int fd = fdwatch_fd(w, sock);
        if (fd < 0) {
            return -1;
        }
        PyObject *r = PyObject_CallMethod(loop, "add_writer", "iO", fd, cb);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
        w->writer = fd;
    }
    else if (!on && w->writer >= 0) {
        PyObject *r = PyObject_CallMethod(loop, "remove_writer", "i", w->writer);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
        w->writer = -1;
    }
    return 0;
}

void agentdb_fdwatch_stop(agentdb_state *st, agentdb_fdwatch *w, PyObject *loop)
{
    PyObject *exc = PyErr_GetRaisedException();
    if (loop != NULL && w->reader >= 0) {
        PyObject *r = PyObject_CallMethod(loop, "remove_reader", "i", w->reader);
        if (r == NULL) {
            PyErr_Clear();
        }
        Py_XDECREF(r);
    }
    if (loop != NULL && w->writer >= 0) {
        PyObject *r = PyObject_CallMethod(loop, "remove_writer", "i", w->writer);
        if (r == NULL) {
            PyErr_Clear();
        }
        Py_XDECREF(r);
    }
    w->reader = w->writer = -1;
    int fd = w->fd;
    if (fd >= 0) {
        w->fd = w->src = -1;
        PyObject *r = loop != NULL ? PyObject_CallMethod(loop, "call_soon", "Oi", st->os_close, fd)
                                   : NULL;
        if (r == NULL) {
            PyErr_Clear();
            close(fd); /* no running loop: nothing can reuse it under a poll handle */
        }
        Py_XDECREF(r);
    }
    PyErr_SetRaisedException(exc);
}

int agentdb_loop_setup(PyObject *module, agentdb_state *st)
{
    st->IOHandleType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &iohandle_spec, NULL);
    return st->IOHandleType == NULL ? -1 : 0;
}
