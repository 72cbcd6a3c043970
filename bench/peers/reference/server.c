/* The benchmark's reference server: the physical-limit yardstick. Plain C, epoll, one thread,
 * no framework, no allocation per event.
 *
 *     make -C bench/peers/reference && bench/peers/reference/server --port 8006
 *
 * GET /count?n=N            N events "event: counter\nid: i\ndata: i\n\n" (i = 1..N), written
 *                           as large pre-formatted chunks (about 128 KiB each), then the
 *                           terminating chunk.
 * GET /shape?kind=K&n=N     the same, with the events of the shapes users write (as the
 *                           other peers' /shape): seed "event: token\nid: i\ndata: token i",
 *                           fstring "event: time ... data: Current time: <wall clock>",
 *                           json "event: json ... data: {"i":i,"token":"hello","done":false}";
 *                           async = seed (C has no async generator to await in).
 * GET /events               subscribe: ": subscribed\n\n" is sent once the subscriber is
 *                           registered.
 * POST /publish?n=M&size=B  M events "event: bench\nid: k\ndata: xxx...\n\n" (B bytes of "x"),
 *                           formatted once into shared chunks (one per 128 KiB) and written
 *                           to every subscriber; what a socket does not take is queued
 *                           (a reference to the shared chunk, not a copy) and flushed on
 *                           EPOLLOUT. Answers 200 {"published":M} once all are queued.
 * POST /pub                 the body as one event (one data: line per body line); 200 {"id":k}.
 * Anything else             404.
 *
 * HTTP/1.1 keep-alive and pipelining, Content-Length bodies, "Expect: 100-continue".
 * Subscriber queues are unbounded (a slow subscriber holds references to shared chunks).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define BATCH_BODY (128 * 1024)   /* body bytes per pre-formatted chunk */
#define COUNT_BATCHES_PER_TURN 8  /* fairness: /count yields to the loop after this many */
#define MAX_REQUEST_HEAD (64 * 1024)
#define MAX_BODY (16 * 1024 * 1024)
#define IOV_BATCH 64

/* -- shared, reference-counted output buffers ------------------------------------------ */

typedef struct buf {
    int refs;
    size_t start;   /* bytes to send: data[start .. len) */
    size_t len;
    char data[];
} buf_t;

static buf_t *buf_new(size_t cap) {
    buf_t *b = malloc(sizeof(buf_t) + cap);
    if (!b) { perror("malloc"); exit(1); }
    b->refs = 1;
    b->start = 0;
    b->len = 0;
    return b;
}

static void buf_unref(buf_t *b) {
    if (--b->refs == 0) free(b);
}

typedef struct out {
    buf_t *b;
    size_t off;
    struct out *next;
} out_t;

/* -- connections -------------------------------------------------------------------------- */

enum { IDLE, COUNTING, SUBSCRIBED };

typedef struct conn {
    int fd;
    int state;
    int dead;               /* closed; freed at the end of the loop turn */
    int close_after;        /* Connection: close, or an error: close once the output is out */
    int want_out;           /* EPOLLOUT is registered */
    char *in;               /* request bytes not yet consumed */
    size_t in_len, in_cap;
    out_t *head, *tail;     /* queued output */
    long count_next, count_n;
    int count_kind;         /* /count: 0; /shape: SHAPE_SEED, SHAPE_FSTRING, SHAPE_JSON */
    struct conn *prev, *next;   /* subscriber list; then the graveyard */
} conn_t;

static int ep;
static conn_t *subscribers;
static long subscriber_count;
static unsigned long long next_id = 1;

static conn_t *graveyard;

/* Close now, free at the end of the loop turn (a later event of the same epoll_wait batch
 * may still point at c: it sees c->dead and skips it). */
static void conn_close(conn_t *c) {
    if (c->dead) return;
    if (c->state == SUBSCRIBED) {
        if (c->prev) c->prev->next = c->next; else subscribers = c->next;
        if (c->next) c->next->prev = c->prev;
        subscriber_count--;
    }
    for (out_t *o = c->head, *n; o; o = n) {
        n = o->next;
        buf_unref(o->b);
        free(o);
    }
    c->head = c->tail = NULL;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in);
    c->in = NULL;
    c->dead = 1;
    c->next = graveyard;
    graveyard = c;
}

static void bury(void) {
    while (graveyard) {
        conn_t *c = graveyard;
        graveyard = c->next;
        free(c);
    }
}

static void set_out(conn_t *c, int on) {
    if (c->want_out == on) return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = on;
}

static void enqueue(conn_t *c, buf_t *b, size_t off) {   /* off: from b->start */
    out_t *o = malloc(sizeof(out_t));
    if (!o) { perror("malloc"); exit(1); }
    b->refs++;
    o->b = b;
    o->off = off;
    o->next = NULL;
    if (c->tail) c->tail->next = o; else c->head = o;
    c->tail = o;
    set_out(c, 1);
}

/* Write b to c now if nothing is queued before it; queue what is left. -1: connection dead. */
static int send_buf(conn_t *c, buf_t *b) {
    size_t off = 0, len = b->len - b->start;
    if (!c->head) {
        while (off < len) {
            ssize_t w = write(c->fd, b->data + b->start + off, len - off);
            if (w > 0) { off += (size_t)w; continue; }
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            return -1;
        }
        if (off == len) return 0;
    }
    enqueue(c, b, off);
    return 0;
}

/* Flush the queue with writev. 1: all out, 0: socket full, -1: dead. */
static int flush(conn_t *c) {
    while (c->head) {
        struct iovec iov[IOV_BATCH];
        int n = 0;
        for (out_t *o = c->head; o && n < IOV_BATCH; o = o->next, n++) {
            iov[n].iov_base = o->b->data + o->b->start + o->off;
            iov[n].iov_len = o->b->len - o->b->start - o->off;
        }
        ssize_t w = writev(c->fd, iov, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            return -1;
        }
        size_t left = (size_t)w;
        while (c->head && left) {
            out_t *o = c->head;
            size_t avail = o->b->len - o->b->start - o->off;
            if (left < avail) { o->off += left; left = 0; break; }
            left -= avail;
            c->head = o->next;
            if (!c->head) c->tail = NULL;
            buf_unref(o->b);
            free(o);
        }
    }
    return 1;
}

static buf_t *text_buf(const char *s, size_t len) {
    buf_t *b = buf_new(len);
    memcpy(b->data, s, len);
    b->len = len;
    return b;
}

static int send_text(conn_t *c, const char *s, size_t len) {
    buf_t *b = text_buf(s, len);
    int r = send_buf(c, b);
    buf_unref(b);
    return r;
}

static int send_json(conn_t *c, const char *status, const char *body) {
    char head[512];
    size_t blen = strlen(body);
    int n = snprintf(head, sizeof head, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n%s",
                     status, status[0] == '2' ? "application/json" : "text/plain", blen,
                     c->close_after ? "Connection: close\r\n" : "", body);
    return send_text(c, head, (size_t)n);
}

static const char SSE_HEAD[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    "X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n";

/* -- formatting -------------------------------------------------------------------------- */

static inline char *put_u64(char *p, unsigned long long v) {
    char tmp[24];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) *p++ = tmp[--n];
    return p;
}

#define PUT(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) + sizeof(lit) - 1)

/* A chunk buffer: room for a chunk-size line in front (filled in by chunk_close). */
#define CHUNK_HEAD_ROOM 12

static buf_t *chunk_open(size_t body_cap, size_t prefix_len, const char *prefix) {
    buf_t *b = buf_new(prefix_len + CHUNK_HEAD_ROOM + body_cap + 2 + 5);
    memcpy(b->data, prefix, prefix_len);
    b->len = prefix_len + CHUNK_HEAD_ROOM;   /* body starts here */
    return b;
}

/* Close the chunk whose body runs from body_start to b->len: write its size line right in
 * front of the body, move the prefix up against it, start the buffer where the prefix now
 * starts, and put "\r\n" after the body. */
static void chunk_close(buf_t *b, size_t prefix_len, int last) {
    size_t body_start = prefix_len + CHUNK_HEAD_ROOM;
    size_t body_len = b->len - body_start;
    char line[CHUNK_HEAD_ROOM + 1];
    int hl = snprintf(line, sizeof line, "%zx\r\n", body_len);
    memcpy(b->data + body_start - hl, line, (size_t)hl);
    size_t shift = CHUNK_HEAD_ROOM - (size_t)hl;
    if (shift && prefix_len) memmove(b->data + shift, b->data, prefix_len);
    b->start = shift;
    memcpy(b->data + b->len, "\r\n", 2);
    b->len += 2;
    if (last) {
        memcpy(b->data + b->len, "0\r\n\r\n", 5);
        b->len += 5;
    }
}

/* -- /count ------------------------------------------------------------------------------ */

/* the longest event put_event writes: the json shape with two 20-digit numbers (~100) */
#define COUNT_EVENT_MAX 160
enum { SHAPE_COUNTER = 0, SHAPE_SEED, SHAPE_FSTRING, SHAPE_JSON };

/* One /count or /shape event at p (at most COUNT_EVENT_MAX bytes); returns its end. */
static char *put_event(char *p, int kind, long i) {
    switch (kind) {
    case SHAPE_SEED:   /* the seed's AI tokens: data f"token {i}", str id */
        p = PUT(p, "event: token\nid: ");
        p = put_u64(p, (unsigned long long)i);
        p = PUT(p, "\ndata: token ");
        p = put_u64(p, (unsigned long long)i);
        return PUT(p, "\n\n");
    case SHAPE_FSTRING: {   /* data f"Current time: {time.time()}" */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        p = PUT(p, "event: time\nid: ");
        p = put_u64(p, (unsigned long long)i);
        p = PUT(p, "\ndata: Current time: ");
        p += snprintf(p, 32, "%.7f", (double)ts.tv_sec + ts.tv_nsec / 1e9);
        return PUT(p, "\n\n");
    }
    case SHAPE_JSON:   /* data {"i":i,"token":"hello","done":false} */
        p = PUT(p, "event: json\nid: ");
        p = put_u64(p, (unsigned long long)i);
        p = PUT(p, "\ndata: {\"i\":");
        p = put_u64(p, (unsigned long long)i);
        return PUT(p, ",\"token\":\"hello\",\"done\":false}\n\n");
    default:
        p = PUT(p, "event: counter\nid: ");
        p = put_u64(p, (unsigned long long)i);
        p = PUT(p, "\ndata: ");
        p = put_u64(p, (unsigned long long)i);
        return PUT(p, "\n\n");
    }
}

/* Write /count batches until the socket is full, the stream is done, or the turn is over. */
static int count_pump(conn_t *c, int first) {
    for (int turn = 0; turn < COUNT_BATCHES_PER_TURN; turn++) {
        if (c->head) return 0;   /* wait for EPOLLOUT */
        const char *prefix = first ? SSE_HEAD : "";
        size_t prefix_len = first ? sizeof(SSE_HEAD) - 1 : 0;
        first = 0;
        if (c->count_next > c->count_n) {          /* n = 0: just the end */
            buf_t *b = buf_new(prefix_len + 5);
            memcpy(b->data, prefix, prefix_len);
            memcpy(b->data + prefix_len, "0\r\n\r\n", 5);
            b->len = prefix_len + 5;
            int r = send_buf(c, b);
            buf_unref(b);
            c->state = IDLE;
            return r;
        }
        buf_t *b = chunk_open(BATCH_BODY + COUNT_EVENT_MAX, prefix_len, prefix);
        char *p = b->data + b->len;
        char *end = b->data + b->len + BATCH_BODY;
        long i = c->count_next;
        while (i <= c->count_n && p < end) {
            p = put_event(p, c->count_kind, i);
            i++;
        }
        b->len = (size_t)(p - b->data);
        c->count_next = i;
        int last = i > c->count_n;
        chunk_close(b, prefix_len, last);
        int r = send_buf(c, b);
        buf_unref(b);
        if (r < 0) return -1;
        if (last) { c->state = IDLE; return 0; }
    }
    set_out(c, 1);   /* more to do: come back on the next loop turn */
    return 0;
}

/* -- broadcast ---------------------------------------------------------------------------- */

static int broadcast(buf_t *b) {
    for (conn_t *s = subscribers, *n; s; s = n) {
        n = s->next;
        if (send_buf(s, b) < 0) conn_close(s);
    }
    return 0;
}

static void publish_many(long n, long size) {
    if (size < 0) size = 0;
    size_t event_max = sizeof("event: bench\nid: \ndata: \n\n") + 20 + (size_t)size;
    size_t cap = event_max > BATCH_BODY ? event_max : BATCH_BODY;
    long k = 0;
    while (k < n) {
        buf_t *b = chunk_open(cap + event_max, 0, "");
        char *p = b->data + b->len;
        char *end = b->data + b->len + cap;
        do {
            p = PUT(p, "event: bench\nid: ");
            p = put_u64(p, next_id++);
            p = PUT(p, "\ndata: ");
            memset(p, 'x', (size_t)size);
            p += size;
            p = PUT(p, "\n\n");
            k++;
        } while (k < n && p + event_max <= end);
        b->len = (size_t)(p - b->data);
        chunk_close(b, 0, 0);
        if (subscribers) broadcast(b);
        buf_unref(b);
    }
}

static unsigned long long publish_body(const char *body, size_t len) {
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) if (body[i] == '\n') lines++;
    buf_t *b = chunk_open(sizeof("event: bench\nid: \n\n") + 20 + len + lines * 7, 0, "");
    char *p = b->data + b->len;
    unsigned long long id = next_id++;
    p = PUT(p, "event: bench\nid: ");
    p = put_u64(p, id);
    p = PUT(p, "\n");
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || body[i] == '\n') {
            size_t e = i;
            if (e > start && body[e - 1] == '\r') e--;
            p = PUT(p, "data: ");
            memcpy(p, body + start, e - start);
            p += e - start;
            *p++ = '\n';
            start = i + 1;
        }
    }
    *p++ = '\n';
    b->len = (size_t)(p - b->data);
    chunk_close(b, 0, 0);
    if (subscribers) broadcast(b);
    buf_unref(b);
    return id;
}

/* -- requests ----------------------------------------------------------------------------- */

static long query_long(const char *q, size_t qlen, const char *name, long fallback) {
    size_t nl = strlen(name);
    const char *p = q, *end = q + qlen;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        if (!amp) amp = end;
        if ((size_t)(amp - p) > nl && !memcmp(p, name, nl) && p[nl] == '=') {
            return strtol(p + nl + 1, NULL, 10);
        }
        p = amp + 1;
    }
    return fallback;
}

/* /shape?kind=K: seed, fstring, json; async is the seed shape (C has no async generator) */
static int query_shape(const char *q, size_t qlen) {
    const char *p = q, *end = q + qlen;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        if (!amp) amp = end;
        size_t n = (size_t)(amp - p);
        if (n == 12 && !memcmp(p, "kind=fstring", 12)) return SHAPE_FSTRING;
        if (n == 9 && !memcmp(p, "kind=json", 9)) return SHAPE_JSON;
        p = amp + 1;
    }
    return SHAPE_SEED;
}

static const char *find_head_end(const char *s, size_t len) {
    return memmem(s, len, "\r\n\r\n", 4);
}

/* Handle the complete requests in c->in. Returns -1 if the connection must go. */
static int handle_input(conn_t *c) {
    while (c->state == IDLE && !c->close_after) {
        const char *end = find_head_end(c->in, c->in_len);
        if (!end) {
            if (c->in_len > MAX_REQUEST_HEAD) return -1;
            return 0;
        }
        size_t head_len = (size_t)(end - c->in) + 4;
        /* request line */
        const char *line_end = memchr(c->in, '\r', head_len);
        const char *sp1 = memchr(c->in, ' ', (size_t)(line_end - c->in));
        if (!sp1) return -1;
        const char *target = sp1 + 1;
        const char *sp2 = memchr(target, ' ', (size_t)(line_end - target));
        if (!sp2) return -1;
        size_t method_len = (size_t)(sp1 - c->in);
        size_t target_len = (size_t)(sp2 - target);
        int http10 = (size_t)(line_end - sp2) >= 9 && !memcmp(sp2 + 1, "HTTP/1.0", 8);
        /* headers */
        long content_length = 0;
        int expect_continue = 0, conn_close_hdr = http10, keep_alive_hdr = 0;
        const char *h = line_end + 2;
        while (h < end) {
            const char *he = memchr(h, '\r', (size_t)(end + 2 - h));
            size_t hl = (size_t)(he - h);
            if (hl > 15 && !strncasecmp(h, "content-length:", 15)) {
                content_length = strtol(h + 15, NULL, 10);
            } else if (hl > 7 && !strncasecmp(h, "expect:", 7)) {
                expect_continue = memmem(h, hl, "100-continue", 12) != NULL;
            } else if (hl > 11 && !strncasecmp(h, "connection:", 11)) {
                if (memmem(h, hl, "close", 5)) conn_close_hdr = 1;
                if (memmem(h, hl, "eep-alive", 9)) keep_alive_hdr = 1;
            } else if (hl > 18 && !strncasecmp(h, "transfer-encoding:", 18)) {
                return -1;   /* chunked request bodies: not needed by any client here */
            }
            h = he + 2;
        }
        if (content_length < 0 || content_length > MAX_BODY) return -1;
        if (c->in_len < head_len + (size_t)content_length) {
            if (expect_continue && c->in_len == head_len) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                if (send_text(c, cont, sizeof cont - 1) < 0) return -1;
            }
            if (c->in_cap < head_len + (size_t)content_length) {
                c->in_cap = head_len + (size_t)content_length;
                c->in = realloc(c->in, c->in_cap);
                if (!c->in) { perror("realloc"); exit(1); }
            }
            return 0;
        }
        /* re-derive pointers (realloc may have moved c->in) */
        target = c->in + (sp1 + 1 - c->in);
        const char *body = c->in + head_len;
        c->close_after = conn_close_hdr && !(http10 && keep_alive_hdr);

        const char *qmark = memchr(target, '?', target_len);
        size_t path_len = qmark ? (size_t)(qmark - target) : target_len;
        const char *query = qmark ? qmark + 1 : "";
        size_t query_len = qmark ? target_len - path_len - 1 : 0;
        int is_get = method_len == 3 && !memcmp(c->in, "GET", 3);
        int is_post = method_len == 4 && !memcmp(c->in, "POST", 4);
#define PATH_IS(lit) (path_len == sizeof(lit) - 1 && !memcmp(target, lit, sizeof(lit) - 1))
        int r = 0;
        char json[64];
        if (is_get && (PATH_IS("/count") || PATH_IS("/shape"))) {
            c->state = COUNTING;
            c->count_kind = PATH_IS("/count") ? SHAPE_COUNTER : query_shape(query, query_len);
            c->count_n = query_long(query, query_len, "n", 10000);
            c->count_next = 1;
            r = count_pump(c, 1);
        } else if (is_get && PATH_IS("/events")) {
            c->state = SUBSCRIBED;
            c->prev = NULL;
            c->next = subscribers;
            if (subscribers) subscribers->prev = c;
            subscribers = c;
            subscriber_count++;
            static const char first[] = "e\r\n: subscribed\n\n\r\n";   /* 14 bytes */
            buf_t *b = buf_new(sizeof(SSE_HEAD) + sizeof(first));
            memcpy(b->data, SSE_HEAD, sizeof(SSE_HEAD) - 1);
            memcpy(b->data + sizeof(SSE_HEAD) - 1, first, sizeof(first) - 1);
            b->len = sizeof(SSE_HEAD) - 1 + sizeof(first) - 1;
            r = send_buf(c, b);
            buf_unref(b);
        } else if (is_post && PATH_IS("/publish")) {
            long n = query_long(query, query_len, "n", 1);
            long size = query_long(query, query_len, "size", 64);
            publish_many(n, size);
            snprintf(json, sizeof json, "{\"published\":%ld}", n);
            r = send_json(c, "200 OK", json);
        } else if (is_post && PATH_IS("/pub")) {
            unsigned long long id = publish_body(body, (size_t)content_length);
            snprintf(json, sizeof json, "{\"id\":%llu}", id);
            r = send_json(c, "200 OK", json);
        } else {
            r = send_json(c, "404 Not Found", "not found\n");
        }
        /* consume the request */
        size_t used = head_len + (size_t)content_length;
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
        if (r < 0) return -1;
    }
    if (c->close_after && c->state == IDLE && !c->head) return -1;   /* all out: close */
    if (c->state == SUBSCRIBED && c->in) {   /* a subscriber keeps no input buffer */
        free(c->in);
        c->in = NULL;
        c->in_len = c->in_cap = 0;
    }
    return 0;
}

static int on_readable(conn_t *c) {
    for (;;) {
        if (c->in_cap - c->in_len < 4096) {
            c->in_cap = c->in_cap ? c->in_cap * 2 : 4096;
            c->in = realloc(c->in, c->in_cap);
            if (!c->in) { perror("realloc"); exit(1); }
        }
        ssize_t r = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
        if (r > 0) {
            if (c->state == SUBSCRIBED) continue;   /* ignore anything a subscriber sends */
            c->in_len += (size_t)r;
            continue;
        }
        if (r == 0) return -1;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        return -1;
    }
    if (c->state == SUBSCRIBED) {   /* an idle subscriber keeps no input buffer */
        free(c->in);
        c->in = NULL;
        c->in_len = c->in_cap = 0;
        return 0;
    }
    return handle_input(c);
}

static int on_writable(conn_t *c) {
    int r = flush(c);
    if (r < 0) return -1;
    if (r == 0) return 0;
    if (c->state == COUNTING) {
        if (count_pump(c, 0) < 0) return -1;
        if (c->state == COUNTING || c->head) return 0;
    }
    set_out(c, 0);
    if (c->close_after) return -1;
    return handle_input(c);   /* pipelined requests that waited for the stream to end */
}

/* -- main --------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 8006;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--host") && i + 1 < argc) host = argv[++i];
        else { fprintf(stderr, "usage: %s [--host H] [--port P]\n", argv[0]); return 2; }
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) { fprintf(stderr, "bad host\n"); return 2; }
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("bind"); return 3; }
    if (listen(lfd, 4096) < 0) { perror("listen"); return 3; }
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    fprintf(stderr, "reference server on http://%s:%d\n", host, port);

    struct epoll_event events[512];
    for (;;) {
        int n = epoll_wait(ep, events, 512, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = events[i].data.ptr;
            if (c && c->dead) continue;
            if (!c) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_t *nc = calloc(1, sizeof(conn_t));
                    if (!nc) { perror("calloc"); exit(1); }
                    nc->fd = fd;
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            uint32_t e = events[i].events;
            int dead = 0;
            if (e & (EPOLLERR | EPOLLHUP)) dead = 1;
            if (!dead && (e & (EPOLLIN | EPOLLRDHUP))) dead = on_readable(c) < 0;
            if (!dead && (e & EPOLLOUT)) dead = on_writable(c) < 0;
            if (dead) conn_close(c);
        }
        bury();
    }
}
