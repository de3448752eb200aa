/* sqlclass.c: what a statement does to its session, read from its text.

   The pool shares connections between callers and must know, before sending a
   statement, whether it changes the session (it then runs on a connection of
   its own, reset afterwards) and whether it opens or ends a transaction block.
   A full parser is not needed: PostgreSQL's statements say what they are in
   their first words, and the functions that change the session from inside a
   query have fixed names.  Quotes, dollar quotes and comments are skipped, so
   a word inside a string literal never counts. */
#include "sqlclass.h"

#include <string.h>

/* Words kept from the start of each statement, and their longest length. */
#define LEAD_WORDS 6
#define WORD_MAX 32

typedef struct {
    char lead[LEAD_WORDS][WORD_MAX]; /* first words, lowercased ("" when absent) */
    int nlead;
    unsigned body;   /* flags found from words anywhere in the statement */
    int after_into;  /* the previous word was INTO (SELECT ... INTO TEMP t) */
    int into_scope;  /* 1, 2: INTO then GLOBAL/LOCAL, waiting for TEMP */
    const char *enc; /* where "client_encoding" or "names" follows SET (for its value) */
} stmt_words;

static int is_space(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

static int is_word_start(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || ch >= 0x80;
}

static int is_word_char(unsigned char ch)
{
    return is_word_start(ch) || (ch >= '0' && ch <= '9') || ch == '$';
}

static unsigned char lower(unsigned char ch)
{
    return ch >= 'A' && ch <= 'Z' ? (unsigned char)(ch + 32) : ch;
}

/* The end of a '...' literal starting at p (at the quote); backslashes escape
   in E'...' strings (`escapes`).  Unterminated: the end of the text. */
static const char *skip_string(const char *p, const char *end, int escapes)
{
    for (p++; p < end; p++) {
        if (escapes && *p == '\\' && p + 1 < end) {
            p++;
        }
        else if (*p == '\'') {
            if (p + 1 < end && p[1] == '\'') {
                p++;
                continue;
            }
            return p + 1;
        }
    }
    return end;
}

/* The end of a "..." identifier starting at p. */
static const char *skip_quoted_ident(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '"') {
            if (p + 1 < end && p[1] == '"') {
                p++;
                continue;
            }
            return p + 1;
        }
    }
    return end;
}

/* A dollar quote's opening tag at p ("$$" or "$tag$"): its length, or 0 when p
   starts no dollar quote ("$1" is a parameter). */
static Py_ssize_t dollar_tag(const char *p, const char *end)
{
    const char *q = p + 1;
    if (q < end && *q != '$' && !is_word_start((unsigned char)*q)) {
        return 0;
    }
    while (q < end && *q != '$') {
        if (!is_word_char((unsigned char)*q) || *q == '$') {
            return 0;
        }
        q++;
    }
    return q < end ? q - p + 1 : 0;
}

/* The end of a dollar-quoted string whose tag (of `taglen` bytes) starts at p. */
static const char *skip_dollar(const char *p, const char *end, Py_ssize_t taglen)
{
    const char *q = p + taglen;
    while (q + taglen <= end) {
        if (*q == '$' && memcmp(q, p, (size_t)taglen) == 0) {
            return q + taglen;
        }
        q++;
    }
    return end;
}

/* The end of a comment at p ("--" or a nested slash-star), or p when none starts there. */
static const char *skip_comment(const char *p, const char *end)
{
    if (p + 1 < end && p[0] == '-' && p[1] == '-') {
        while (p < end && *p != '\n') {
            p++;
        }
        return p;
    }
    if (p + 1 < end && p[0] == '/' && p[1] == '*') {
        int depth = 1;
        p += 2;
        while (p < end && depth > 0) {
            if (p + 1 < end && p[0] == '/' && p[1] == '*') {
                depth++;
                p += 2;
            }
            else if (p + 1 < end && p[0] == '*' && p[1] == '/') {
                depth--;
                p += 2;
            }
            else {
                p++;
            }
        }
        return p;
    }
    return p;
}

static int word_is(const char *w, Py_ssize_t len, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)len != n) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (lower((unsigned char)w[i]) != (unsigned char)lit[i]) {
            return 0;
        }
    }
    return 1;
}

static int word_starts(const char *w, Py_ssize_t len, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)len < n) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (lower((unsigned char)w[i]) != (unsigned char)lit[i]) {
            return 0;
        }
    }
    return 1;
}

/* A word of the statement outside quotes and comments: the functions that change
   the session from inside a query, and SELECT ... INTO TEMP. */
static void see_word(stmt_words *sw, const char *w, Py_ssize_t len)
{
    if (sw->nlead < LEAD_WORDS) {
        char *dst = sw->lead[sw->nlead++];
        Py_ssize_t n = len < WORD_MAX - 1 ? len : WORD_MAX - 1;
        for (Py_ssize_t i = 0; i < n; i++) {
            dst[i] = (char)lower((unsigned char)w[i]);
        }
        dst[n] = '\0';
    }
    unsigned char c0 = lower((unsigned char)w[0]);
    if (sw->after_into || sw->into_scope) {
        if (word_is(w, len, "temp") || word_is(w, len, "temporary")) {
            sw->body |= AGENTDB_SQL_SESSION;
        }
        sw->into_scope = sw->after_into && (word_is(w, len, "global") || word_is(w, len, "local"));
        sw->after_into = 0;
    }
    if (c0 == 'i' && word_is(w, len, "into")) {
        /* SELECT ... INTO TEMP t creates a table; INSERT INTO temp names one */
        sw->after_into = strcmp(sw->lead[0], "insert") != 0 && strcmp(sw->lead[0], "merge") != 0;
    }
    else if (c0 == 'p' && (word_starts(w, len, "pg_advisory_lock") ||
                           word_starts(w, len, "pg_advisory_unlock") ||
                           word_starts(w, len, "pg_try_advisory_lock") ||
                           word_is(w, len, "pg_temp") || word_starts(w, len, "pg_temp_"))) {
        sw->body |= AGENTDB_SQL_SESSION; /* session locks; the temporary schema */
    }
    else if (c0 == 's' && word_is(w, len, "set_config")) {
        sw->body |= AGENTDB_SQL_SESSION;
    }
    else if (c0 == 'd' && word_starts(w, len, "dblink")) {
        sw->body |= AGENTDB_SQL_SESSION; /* dblink_connect: a named link for the session */
    }
}

/* Scan one statement from p: its words go to `sw`; returns where it ends (at its
   ';' or the end of the text). */
static const char *scan_statement(const char *p, const char *end, stmt_words *sw)
{
    while (p < end) {
        unsigned char ch = (unsigned char)*p;
        if (ch == ';') {
            return p;
        }
        if (is_space(ch)) {
            p++;
            continue;
        }
        const char *after = skip_comment(p, end);
        if (after != p) {
            p = after;
            continue;
        }
        if (ch == '\'') {
            p = skip_string(p, end, 0);
            continue;
        }
        if (ch == '"') {
            p = skip_quoted_ident(p, end);
            continue;
        }
        if (ch == '$') {
            Py_ssize_t tag = dollar_tag(p, end);
            p = tag > 0 ? skip_dollar(p, end, tag) : p + 1;
            continue;
        }
        if (is_word_start(ch)) {
            const char *w = p;
            while (p < end && is_word_char((unsigned char)*p)) {
                p++;
            }
            /* E'...' (backslash escapes), U&'...', B'...', X'...': the prefix is not a word */
            if (p < end && *p == '\'' && p - w == 1) {
                p = skip_string(p, end, lower((unsigned char)*w) == 'e');
                continue;
            }
            if (sw->enc == NULL && sw->nlead >= 1 && sw->nlead <= 3 &&
                strcmp(sw->lead[0], "set") == 0 &&
                (word_is(w, p - w, "client_encoding") || word_is(w, p - w, "names"))) {
                sw->enc = p;
            }
            see_word(sw, w, p - w);
            continue;
        }
        p++; /* punctuation, digits, operators */
    }
    return end;
}

/* 1 when the value given to SET client_encoding / SET NAMES (its text starts at
   p) names UTF-8 or DEFAULT: such a SET changes nothing. */
static int sets_utf8(const char *p, const char *end)
{
    while (p < end && is_space((unsigned char)*p)) {
        p++;
    }
    if (p < end && *p == '=') {
        p++;
    }
    else if (end - p >= 2 && lower((unsigned char)p[0]) == 't' && lower((unsigned char)p[1]) == 'o' &&
             (end - p == 2 || !is_word_char((unsigned char)p[2]))) {
        p += 2;
    }
    while (p < end && is_space((unsigned char)*p)) {
        p++;
    }
    const char *v = p, *vend;
    if (p < end && *p == '\'') {
        v = p + 1;
        vend = skip_string(p, end, 0) - 1;
    }
    else {
        while (p < end && is_word_char((unsigned char)*p)) {
            p++;
        }
        vend = p;
    }
    Py_ssize_t n = vend - v;
    return n > 0 && (word_is(v, n, "utf8") || word_is(v, n, "utf-8") || word_is(v, n, "unicode") ||
                     word_is(v, n, "default"));
}

static int lead_is(const stmt_words *sw, int i, const char *lit)
{
    return i < sw->nlead && strcmp(sw->lead[i], lit) == 0;
}

/* "AND CHAIN" among the words from i on: COMMIT/ROLLBACK AND CHAIN keeps a transaction open. */
static int chains(const stmt_words *sw, int i)
{
    for (; i + 1 < sw->nlead; i++) {
        if (lead_is(sw, i, "and") && lead_is(sw, i + 1, "chain")) {
            return 1;
        }
    }
    return 0;
}

/* CREATE [OR REPLACE] [GLOBAL | LOCAL] {TEMP | TEMPORARY} [UNLOGGED] ... */
static int creates_temp(const stmt_words *sw)
{
    for (int i = 1; i < sw->nlead; i++) {
        if (lead_is(sw, i, "temp") || lead_is(sw, i, "temporary")) {
            return 1;
        }
        if (!(lead_is(sw, i, "or") || lead_is(sw, i, "replace") || lead_is(sw, i, "global") ||
              lead_is(sw, i, "local"))) {
            return 0;
        }
    }
    return 0;
}

/* What SET ... does: nothing beyond the transaction (SET LOCAL, SET TRANSACTION,
   SET CONSTRAINTS), the session, or the client encoding. */
static unsigned classify_set(const stmt_words *sw, const char *end)
{
    int i = 1;
    if (lead_is(sw, 1, "local") || lead_is(sw, 1, "session")) {
        i = 2;
    }
    if (lead_is(sw, i, "client_encoding") || lead_is(sw, i, "names")) {
        if (sw->enc != NULL && sets_utf8(sw->enc, end)) {
            return lead_is(sw, 1, "local") ? 0 : AGENTDB_SQL_SESSION;
        }
        return AGENTDB_SQL_ENCODING;
    }
    if (lead_is(sw, 1, "local") || lead_is(sw, 1, "transaction") ||
        lead_is(sw, 1, "constraints")) {
        return 0;
    }
    return AGENTDB_SQL_SESSION;
}

/* Words that start a statement whose effects end with it (or with its
   transaction): reads, writes, DDL, maintenance, transaction-scoped locks. */
static const char *const PLAIN_FIRST_WORDS[] = {
    "select",  "with",     "values",  "table",      "insert",  "update",  "delete",
    "merge",   "explain",  "copy",    "show",       "notify",  "vacuum",  "analyze",
    "analyse", "cluster",  "reindex", "checkpoint", "refresh", "truncate", "grant",
    "revoke",  "comment",  "security", "import",    "alter",   "drop",    "reassign",
    "lock",    "savepoint", "release", NULL,
};

/* Words that start a statement that changes the session. */
static const char *const SESSION_FIRST_WORDS[] = {
    "reset",  "listen", "unlisten", "load",  "do",      "call",    "declare",
    "fetch",  "move",   "close",    "execute", NULL,
};

static int in_list(const char *w, const char *const *list)
{
    for (; *list != NULL; list++) {
        if (strcmp(w, *list) == 0) {
            return 1;
        }
    }
    return 0;
}

/* The flags of one statement from its first words. */
static unsigned classify_lead(const stmt_words *sw, const char *end)
{
    const char *w0 = sw->lead[0];
    if (sw->nlead == 0 || in_list(w0, PLAIN_FIRST_WORDS)) {
        return 0; /* an empty statement (a ping) changes nothing */
    }
    if (in_list(w0, SESSION_FIRST_WORDS)) {
        return AGENTDB_SQL_SESSION;
    }
    if (strcmp(w0, "create") == 0) {
        return creates_temp(sw) ? AGENTDB_SQL_SESSION : 0;
    }
    if (strcmp(w0, "begin") == 0) {
        return AGENTDB_SQL_BEGIN;
    }
    if (strcmp(w0, "start") == 0) {
        return lead_is(sw, 1, "transaction") ? AGENTDB_SQL_BEGIN : AGENTDB_SQL_SESSION;
    }
    if (strcmp(w0, "commit") == 0 || strcmp(w0, "end") == 0 || strcmp(w0, "abort") == 0) {
        return lead_is(sw, 1, "prepared") || chains(sw, 1) ? 0 : AGENTDB_SQL_END;
    }
    if (strcmp(w0, "rollback") == 0) {
        int i = lead_is(sw, 1, "work") || lead_is(sw, 1, "transaction") ? 2 : 1;
        return lead_is(sw, i, "to") || lead_is(sw, 1, "prepared") || chains(sw, 1)
                   ? 0
                   : AGENTDB_SQL_END;
    }
    if (strcmp(w0, "prepare") == 0) {
        return lead_is(sw, 1, "transaction") ? AGENTDB_SQL_END
                                             : AGENTDB_SQL_SESSION | AGENTDB_SQL_PREPARE;
    }
    if (strcmp(w0, "deallocate") == 0) {
        return AGENTDB_SQL_SESSION | AGENTDB_SQL_PREPARE;
    }
    if (strcmp(w0, "discard") == 0) {
        return AGENTDB_SQL_SESSION | (lead_is(sw, 1, "all") ? AGENTDB_SQL_PREPARE : 0);
    }
    if (strcmp(w0, "set") == 0) {
        return classify_set(sw, end);
    }
    return AGENTDB_SQL_SESSION; /* not a statement we know: assume the worst */
}

unsigned agentdb_sql_classify(const char *sql, Py_ssize_t n)
{
    const char *p = sql, *end = sql + n;
    unsigned flags = 0;
    while (p < end) {
        stmt_words sw;
        memset(&sw, 0, sizeof(sw));
        const char *stmt_end = scan_statement(p, end, &sw);
        unsigned f = classify_lead(&sw, stmt_end) | sw.body;
        if (f & (AGENTDB_SQL_BEGIN | AGENTDB_SQL_END)) {
            flags &= ~(unsigned)(AGENTDB_SQL_BEGIN | AGENTDB_SQL_END); /* the last one wins */
        }
        flags |= f;
        p = stmt_end + 1;
    }
    return flags;
}

PyObject *agentdb_sql_classify_py(PyObject *module, PyObject *sql)
{
    (void)module;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(sql, &n);
    if (s == NULL) {
        return NULL;
    }
    return PyLong_FromUnsignedLong(agentdb_sql_classify(s, n));
}
