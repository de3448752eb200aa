/* conn_io.c: a connection's socket under the event loop: the descriptor the loop
   polls (a dup of libpq's), the readiness callbacks, and the watchdog for lost wake-ups. */
#include "conn_int.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

/* The loop polls a dup() of libpq's socket that we own, never libpq's own
   descriptor.  libpq closes its socket whenever the connection breaks, and
   uvloop closes its poll handle one iteration after remove_reader(): if the
   number were reused by a new connection's socket in between, the deferred
   close would silently unregister the new one.  Our duplicate keeps the number
   taken until after the loop has let go of it (closed on the next iteration). */
static int conn_watch_fd(agentdb_Connection *c, int sock)
{
    if (c->watch_fd >= 0 && c->watch_src == sock) {
        return c->watch_fd;
    }
    int fd = fcntl(sock, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    c->watch_fd = fd;
    c->watch_src = sock;
    return fd;
}

static void conn_release_watch_fd(agentdb_Connection *c)
{
    int fd = c->watch_fd;
    if (fd < 0) {
        return;
    }
    c->watch_fd = c->watch_src = -1;
    PyObject *r = NULL;
    if (c->loop != NULL) {
        r = PyObject_CallMethod(c->loop, "call_soon", "Oi", agentdb_conn_st(c)->os_close, fd);
    }
    if (r == NULL) {
        PyErr_Clear();
        close(fd); /* no running loop: nothing can reuse it under a poll handle */
    }
    Py_XDECREF(r);
}

void agentdb_conn_unwatch(agentdb_Connection *c)
{
    if (c->pid != 0 && c->pid != (long)getpid()) {
        /* A forked child: its loop shares the parent's epoll instance, and
           unregistering here would unregister the parent's socket. Forget. */
        c->reader_fd = c->writer_fd = -1;
        c->watch_fd = c->watch_src = -1;
        return;
    }
    PyObject *exc = PyErr_GetRaisedException();
    if (c->loop != NULL && c->reader_fd >= 0) {
        PyObject *r = PyObject_CallMethod(c->loop, "remove_reader", "i", c->reader_fd);
        if (r == NULL) {
            PyErr_Clear();
        }
        Py_XDECREF(r);
    }
    if (c->loop != NULL && c->writer_fd >= 0) {
        PyObject *r = PyObject_CallMethod(c->loop, "remove_writer", "i", c->writer_fd);
        if (r == NULL) {
            PyErr_Clear();
        }
        Py_XDECREF(r);
    }
    c->reader_fd = c->writer_fd = -1;
    conn_release_watch_fd(c);
    PyErr_SetRaisedException(exc);
}

int agentdb_conn_watch_read(agentdb_Connection *c, int sock)
{
    int fd = conn_watch_fd(c, sock);
    if (fd < 0) {
        return -1;
    }
    if (c->reader_fd == fd) {
        return 0;
    }
    PyObject *r = PyObject_CallMethod(c->loop, "add_reader", "iO", fd, c->cb_read);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    c->reader_fd = fd;
    return 0;
}

int agentdb_conn_watch_write(agentdb_Connection *c, int sock, int on)
{
    if (on && c->writer_fd < 0) {
        int fd = conn_watch_fd(c, sock);
        if (fd < 0) {
            return -1;
        }
        PyObject *r = PyObject_CallMethod(c->loop, "add_writer", "iO", fd, c->cb_write);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
        c->writer_fd = fd;
    }
    else if (!on && c->writer_fd >= 0) {
        PyObject *r = PyObject_CallMethod(c->loop, "remove_writer", "i", c->writer_fd);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
        c->writer_fd = -1;
    }
    return 0;
}

/* The part of a readiness callback that does not depend on the direction: a connection
 * still connecting takes its next connect step, one that is closing stops watching its
 * socket. Returns the connection when it is ready for I/O, NULL when the event is used. */
static agentdb_Connection *conn_ready_for_io(PyObject *self)
{
    agentdb_Connection *c = (agentdb_Connection *)self;
    if (c->state == CONN_CONNECTING) {
        agentdb_conn_connect_step(c);
        return NULL;
    }
    if (c->state != CONN_READY) {
        agentdb_conn_unwatch(c);
        return NULL;
    }
    return c;
}

void agentdb_conn_on_read(PyObject *self, PyObject *arg)
{
    (void)arg;
    agentdb_Connection *c = conn_ready_for_io(self);
    if (c == NULL) {
        return;
    }
    c->reads++;
    if (c->link.pool != NULL) {
        agentdb_pool_note_read(c->link.pool, agentdb_monotonic());
    }
    if (!PQconsumeInput(c->pg)) {
        agentdb_conn_lost(c, NULL);
        return;
    }
    agentdb_conn_drain_notifies(c);
    if (c->writer_fd >= 0 && agentdb_conn_flush(c) < 0) {
        return;
    }
    agentdb_conn_process(c);
    if (c->state == CONN_READY && PQstatus(c->pg) != CONNECTION_OK) {
        agentdb_conn_lost(c, NULL);
    }
}

void agentdb_conn_on_write(PyObject *self, PyObject *arg)
{
    (void)arg;
    agentdb_Connection *c = conn_ready_for_io(self);
    if (c == NULL) {
        return;
    }
    if (agentdb_conn_flush(c) == 0 && c->copy_in && c->head != NULL) {
        agentdb_copy_in_continue(c, c->head);
        agentdb_conn_process(c);
    }
}

int agentdb_fd_readable(int fd)
{
    if (fd < 0) {
        return -1;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0);
}

int agentdb_connection_read_pending(agentdb_Connection *c)
{
    if (c->state != CONN_READY || c->pg == NULL || c->nops != 0 ||
        agentdb_fd_readable(PQsocket(c->pg)) <= 0) {
        return 0;
    }
    Py_INCREF(c); /* a pool's close hook may drop the last reference */
    agentdb_conn_on_read((PyObject *)c, Py_None);
    Py_DECREF(c);
    return 1;
}

/* The watchdog, every second while statements are pending: when the socket
   has data and no read happened since the last tick, the loop stopped telling
   us (seen on uvloop when a server restart closes many sockets at once):
   register the reader again and read now, so no statement waits forever. */
void agentdb_conn_on_watchdog(PyObject *self, PyObject *arg)
{
    (void)arg;
    agentdb_Connection *c = (agentdb_Connection *)self;
    agentdb_state *st = agentdb_conn_st(c);
    Py_CLEAR(c->watchdog);
    if (c->state != CONN_READY || c->nops == 0 || c->pg == NULL) {
        return;
    }
    if (c->reads == c->reads_seen && agentdb_fd_readable(PQsocket(c->pg)) > 0) {
        c->stalls++;
        if (c->reader_fd >= 0) {
            PyObject *r = PyObject_CallMethod(c->loop, "remove_reader", "i", c->reader_fd);
            Py_XDECREF(r);
            PyErr_Clear();
            c->reader_fd = -1;
        }
        if (agentdb_conn_watch_read(c, PQsocket(c->pg)) < 0) {
            PyErr_WriteUnraisable(self);
        }
        agentdb_conn_on_read(self, Py_None);
        if (c->state != CONN_READY) {
            return;
        }
    }
    c->reads_seen = c->reads;
    if (c->nops > 0) {
        c->watchdog = agentdb_call_later(st, c->loop, 1.0, c->cb_watchdog, Py_None);
        if (c->watchdog == NULL) {
            PyErr_Clear();
        }
    }
}
