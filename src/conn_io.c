/* conn_io.c: a connection's socket under the event loop: watching it (a dup of libpq's,
   agentdb_fdwatch), the readiness callbacks, and the watchdog for lost wake-ups. */
#include "conn_int.h"

#include <poll.h>
#include <unistd.h>

/* The loop polls our duplicate of libpq's socket (agentdb_fdwatch, loop.h says why). */
void agentdb_conn_unwatch(agentdb_Connection *c)
{
    if (c->pid != 0 && c->pid != (long)getpid()) {
        /* A forked child: its loop shares the parent's epoll instance, and
           unregistering here would unregister the parent's socket. Forget. */
        agentdb_fdwatch_init(&c->watch);
        return;
    }
    agentdb_fdwatch_stop(agentdb_conn_st(c), &c->watch, c->loop);
}

int agentdb_conn_watch_read(agentdb_Connection *c, int sock)
{
    return agentdb_fdwatch_read(&c->watch, c->loop, sock, c->cb_read);
}

int agentdb_conn_watch_write(agentdb_Connection *c, int sock, int on)
{
    return agentdb_fdwatch_write(&c->watch, c->loop, sock, on, c->cb_write);
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
    if (c->watch.writer >= 0 && agentdb_conn_flush(c) < 0) {
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
        if (c->watch.reader >= 0) {
            PyObject *r = PyObject_CallMethod(c->loop, "remove_reader", "i", c->watch.reader);
            Py_XDECREF(r);
            PyErr_Clear();
            c->watch.reader = -1;
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
