/* codecs.c: Python values <-> PostgreSQL values, by type OID. */
#include "codecs.h"
/* STUB: replaced by the codecs work. */
int agentdb_codecs_setup(PyObject *module, agentdb_state *st) { (void)module; (void)st; return 0; }
int agentdb_codecs_traverse(agentdb_state *st, visitproc visit, void *arg) { (void)st; (void)visit; (void)arg; return 0; }
void agentdb_codecs_clear(agentdb_state *st) { (void)st; }
agentdb_decode_fn agentdb_decoder(Oid oid, int binary) { (void)oid; (void)binary; return NULL; }
int agentdb_params_encode(agentdb_state *st, agentdb_params *p, PyObject *args, const Oid *types, int ntypes) { (void)st; (void)p; (void)args; (void)types; (void)ntypes; return -1; }
void agentdb_params_free(agentdb_params *p) { (void)p; }
PyObject *agentdb_codecs_decode_py(PyObject *module, PyObject *const *args, Py_ssize_t nargs) { (void)module; (void)args; (void)nargs; Py_RETURN_NONE; }
PyObject *agentdb_codecs_encode_py(PyObject *module, PyObject *const *args, Py_ssize_t nargs) { (void)module; (void)args; (void)nargs; Py_RETURN_NONE; }
