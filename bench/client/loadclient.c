/*
 * loadclient: the benchmark's load client. HTTP/1.1 over raw TCP, SSE event counting,
 * one epoll loop, one thread, no allocation per event. See usage() for the modes.
 *
 * Theory of operation
 * -------------------
 * 1. Every connection owns two small state machines, fed whatever bytes a read returned,
 *    split anywhere:
 *    - http_t parses the response head (status line, Content-Length, Transfer-Encoding,
 *      Connection; 1xx responses are skipped) and then the body: chunked (size lines with
 *      extensions, CRLF or bare LF, trailers), Content-Length, or close-delimited. The
 *      de-framed body bytes go to the SSE counter.
 *    - sse_t counts events as the WHATWG "event stream" parser dispatches them: lines end
 *      with CRLF, LF or CR (a CR at the end of one read and an LF at the start of the next
 *      are one line end); one leading UTF-8 BOM is dropped; an empty line dispatches an
 *      event if and only if the event had at least one "data" field ("data", "data:",
 *      "data: x"; the name is case-sensitive and exact); comments (":...") and other
 *      fields never count; an unterminated event at the end of the stream is discarded.
 *      In latency mode it also keeps the first data line of the event (at most CAP_MAX
 *      bytes) to read the publish timestamp from it.
 * 2. One read buffer is shared by every connection: bytes are consumed as they arrive.
 * 3. Subscribers connect with bounded concurrency (--connect-concurrency connections
 *    waiting for their response head at a time), non-blocking, through the same epoll
 *    loop. A subscriber is *registered* once its response head has arrived and either one
 *    body byte (conduit's ": subscribed" comment) or, with --registered-after-ms X > 0 for
 *    servers that send nothing on subscribe, X ms after the head. Publishing starts only
 *    once every subscriber is registered, so nothing can be missed.
 * 4. Output: exactly one JSON object on one line on stdout, at the end, also on failure
 *    (then with an "error" member). Progress and errors go to stderr. Exit 0 on success,
 *    1 on a failed run (timeout, connection error, wrong count), 2 on bad arguments.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static const char USAGE[] =
"usage: loadclient MODE [options]   (one JSON object on stdout; progress on stderr)\n"
"\n"
"  stream  --port P --path PATH [--expect N] [--timeout S=60] [--rcvbuf B=4194304]\n"
"      One GET PATH; counts events until the response ends (last chunk, Content-Length\n"
"      or close). The clock starts just before the request is sent.\n"
"      -> {events, bytes (as read from the socket), body_bytes, complete, seconds,\n"
"          cpu_seconds}; exit 1 if --expect is given and events != N.\n"
"\n"
"  fanout  --port P --subscribers S --events M [--size B=64] [--sub-path /events]\n"
"          [--publish-path /publish?n=M&size=B] [--publish-port P2]\n"
"          [--publish-requests K=1] [--publish-body TEXT] [--registered-after-ms X=0]\n"
"          [--timeout S=120]\n"
"      S subscribers (GET, Accept: text/event-stream); once all are registered, K POSTs\n"
"      (Content-Length of the body, 0 by default) one after the other on one keep-alive\n"
"      connection to --publish-port (default --port); the clock runs from just before\n"
"      the first POST until every subscriber has counted M events (counted from the\n"
"      first POST on). -> {subscribers, events, deliveries, missing, seconds,\n"
"      cpu_seconds}; exit 1 if missing > 0 or a subscriber got more than M.\n"
"\n"
"  latency --port P --subscribers S --rate R --duration D [--sub-path /events]\n"
"          [--pub-path /pub] [--pub-port P2] [--slow K=0] [--slow-rcvbuf B=0]\n"
"          [--drain S=5] [--registered-after-ms X=0] [--timeout S=2D+30]\n"
"      S subscribers, K of them slow (never read again once registered; --slow-rcvbuf\n"
"      shrinks their receive buffer). Then R POSTs per second for D seconds, one at a\n"
"      time on a keep-alive connection, each body the CLOCK_MONOTONIC nanoseconds at\n"
"      send time. Each event's latency is the time the client could first see it (the\n"
"      epoll wake-up, or the read for bytes that arrived after it) minus the timestamp\n"
"      in its first data line. Publishing must end within --timeout s; after the last\n"
"      POST is answered, waits up to --drain s for the rest. -> {subscribers, slow, published, received, p50_ms, p90_ms,\n"
"      p99_ms, max_ms, missing, unparsed, seconds, cpu_seconds} (nearest-rank\n"
"      percentiles over all non-slow subscribers' events; seconds from the first POST\n"
"      to the last event); exit 1 if missing > 0.\n"
"\n"
"  ticks   --port P --subscribers S --events N --sub-path PATH [--timeout S=120]\n"
"      S subscribers to PATH, a stream the server paces itself (an asyncio producer per\n"
"      stream) that sends N events and ends; each event's first data line is the\n"
"      CLOCK_MONOTONIC nanoseconds it was due at, and its latency is the time the client\n"
"      could first see it minus that. Every event is sampled from the first one on (also\n"
"      while later subscribers still connect). -> {subscribers, events_per_stream,\n"
"      received, p50_ms, p90_ms, p99_ms, max_ms, missing, unparsed, seconds,\n"
"      cpu_seconds}; exit 1 if a stream ends early or events are missing.\n"
"\n"
"  streams --port P --subscribers S --events N --sub-path PATH [--timeout S=120]\n"
"      S streams of PATH at once, each a stream of N events that then ends, read as fast\n"
"      as the server sends them; the clock runs from the first connect until every stream\n"
"      has ended. -> {subscribers, events_per_stream, events, seconds, cpu_seconds}; exit\n"
"      1 if a stream ends early or the events do not add up to S x N.\n"
"\n"
"  hold    --port P --subscribers S [--seconds T=0] [--sub-path /events]\n"
"          [--then-publish-path PATH] [--then-events N=1] [--publish-port P2]\n"
"          [--registered-after-ms X=0] [--timeout S=60]\n"
"      Opens S subscribers, prints \"registered S\" on stderr once all are registered,\n"
"      holds them T seconds (still reading), then optionally POSTs PATH once and waits\n"
"      until every subscriber has N more events. -> {subscribers, registered,\n"
"      delivered, seconds (whole run), cpu_seconds (whole run), register_seconds,\n"
"      deliver_seconds}; exit 1 if not all registered or (with a publish) delivered.\n"
"\n"
"  count   [--read-size K=1048576] [--seed S]\n"
"      Reads one HTTP response from stdin in reads of at most K bytes (random sizes in\n"
"      1..K with --seed) and counts its events. -> {events, bytes, body_bytes,\n"
"      complete}; exit 1 only if the response is malformed.\n"
"\n"
"  Common: --host H (default 127.0.0.1), --register-timeout S=120 (connecting and\n"
"  registering subscribers), --connect-concurrency N=256. The soft RLIMIT_NOFILE is\n"
"  raised to the hard limit. cpu_seconds is getrusage(RUSAGE_SELF) over the same\n"
"  interval as seconds (cpu_seconds_total: the whole run).\n";

/* ------------------------------------------------------------------------------------ */
/* errors, clocks, JSON                                                                 */

static char g_error[600];

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    if (g_error[0]) /* the first failure is the one worth reporting */
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_error, sizeof g_error, fmt, ap);
    va_end(ap);
    if (!g_error[0])
        strcpy(g_error, "unknown error");
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* Ends the JSON object (adding "error" if the run failed) and returns the exit status. */
static int json_end(void)
{
    if (g_error[0]) {
        printf(", \"error\": ");
        json_string(g_error);
    }
    printf("}\n");
    fflush(stdout);
    if (g_error[0]) {
        fprintf(stderr, "loadclient: %s\n", g_error);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* the SSE event counter                                                                */

#define CAP_MAX 32
enum { S_BOM, S_START, S_NAME, S_SKIP, S_VALUE0, S_VALUE };

typedef struct {
    uint64_t events;   /* events dispatched (with at least one data field) */
    uint8_t state;     /* S_* */
    uint8_t matched;   /* bytes of the BOM (S_BOM) or of "data" (S_NAME) seen so far */
    uint8_t cr;        /* the last byte was a CR: an LF right after it is not a line end */
    uint8_t has_data;  /* the event being read has a data field */
    uint8_t cap_on;    /* capture: this event's first data line is (being) kept */
    uint8_t cap_len;
    char cap[CAP_MAX]; /* capture: the start of the event's first data line */
} sse_t;

static void sse_init(sse_t *s)
{
    memset(s, 0, sizeof *s);
    s->state = S_BOM;
}

/* latency samples (capture mode): set up by the latency mode */
static uint32_t *g_samples;        /* latencies in units of 100 ns, saturating */
static uint64_t g_nsamples, g_samples_cap;
static uint64_t g_received, g_unparsed;
static int64_t g_t_wake, g_t_read; /* the last epoll wake-up and the last read */
static uint64_t g_ticks_per;       /* ticks mode: events per stream (streams then end) */

static void record_event(const sse_t *s)
{
    uint64_t ts = 0;
    int digits = 0;
    for (int i = 0; i < s->cap_len; i++) {
        char c = s->cap[i];
        if (c >= '0' && c <= '9') {
            ts = ts * 10 + (uint64_t)(c - '0');
            digits++;
        } else if (digits) {
            break;
        }
    }
    if (!digits || digits > 19) {
        g_unparsed++;
        return;
    }
    int64_t t = (int64_t)ts;
    int64_t seen = t <= g_t_wake ? g_t_wake : g_t_read;
    int64_t latency = seen > t ? seen - t : 0;
    g_received++;
    if (g_nsamples < g_samples_cap) {
        uint64_t units = (uint64_t)latency / 100;
        g_samples[g_nsamples++] = units > UINT32_MAX ? UINT32_MAX : (uint32_t)units;
    }
}

static inline __attribute__((always_inline)) void
sse_feed_impl(sse_t *restrict s, const char *p, const char *const end, const int capture)
{
    const char *nl = NULL, *cr = NULL; /* cached: the next LF / CR at or after p, or end */
    while (p < end) {
        if (__builtin_expect(s->cr, 0)) {
            s->cr = 0;
            if (*p == '\n' && ++p == end)
                break;
        }
        switch (s->state) {
        case S_START: {
            const char c = *p;
            if (c == '\n' || c == '\r') { /* an empty line: dispatch */
                if (s->has_data) {
                    s->events++;
                    s->has_data = 0;
                    if (capture) {
                        record_event(s);
                        s->cap_len = 0;
                        s->cap_on = 0;
                    }
                }
                s->cr = c == '\r';
                p++;
                continue;
            }
            if (c == 'd') {
                if (end - p >= 5 && p[1] == 'a' && p[2] == 't' && p[3] == 'a') {
                    const char d = p[4];
                    if (d == ':') {
                        s->has_data = 1;
                        p += 5;
                        if (capture && !s->cap_on) {
                            s->cap_on = 1;
                            s->state = S_VALUE0;
                        } else {
                            s->state = S_SKIP;
                        }
                        continue;
                    }
                    if (d == '\n' || d == '\r')
                        s->has_data = 1; /* "data" alone: a data field with value "" */
                    p += 4;
                    s->state = S_SKIP;
                    continue;
                }
                s->state = S_NAME; /* the name may be split across reads */
                s->matched = 1;
                p++;
                continue;
            }
            s->state = S_SKIP; /* a comment or another field */
            p++;
            continue;
        }
        case S_SKIP: { /* to the end of the line */
            if (!nl || nl < p) {
                nl = memchr(p, '\n', (size_t)(end - p));
                if (!nl)
                    nl = end;
            }
            if (!cr || cr < p) {
                cr = memchr(p, '\r', (size_t)(end - p));
                if (!cr)
                    cr = end;
            }
            const char *q = nl < cr ? nl : cr;
            if (q == end) {
                p = end;
                continue;
            }
            s->cr = *q == '\r';
            s->state = S_START;
            p = q + 1;
            continue;
        }
        case S_NAME: {
            const char c = *p;
            if (s->matched < 4) {
                if (c == "data"[s->matched]) {
                    s->matched++;
                    p++;
                } else {
                    s->state = S_SKIP; /* not consumed: it may end the line */
                }
                continue;
            }
            if (c == ':') {
                s->has_data = 1;
                p++;
                if (capture && !s->cap_on) {
                    s->cap_on = 1;
                    s->state = S_VALUE0;
                } else {
                    s->state = S_SKIP;
                }
                continue;
            }
            if (c == '\n' || c == '\r')
                s->has_data = 1;
            s->state = S_SKIP;
            continue;
        }
        case S_VALUE0: /* one leading space of the value is not part of it */
            if (*p == ' ')
                p++;
            s->state = S_VALUE;
            continue;
        case S_VALUE: {
            const char c = *p;
            if (c == '\n' || c == '\r') {
                s->state = S_SKIP;
                continue;
            }
            if (s->cap_len < CAP_MAX)
                s->cap[s->cap_len++] = c;
            p++;
            continue;
        }
        case S_BOM: {
            static const char bom[3] = {(char)0xEF, (char)0xBB, (char)0xBF};
            if (*p == bom[s->matched]) {
                p++;
                if (++s->matched == 3)
                    s->state = S_START;
                continue;
            }
            /* no BOM: a partial one is text, so this line is not empty and not "data" */
            s->state = s->matched ? S_SKIP : S_START;
            continue;
        }
        default:
            return;
        }
    }
}

static void sse_feed(sse_t *s, const char *p, size_t n) { sse_feed_impl(s, p, p + n, 0); }
static void sse_feed_capture(sse_t *s, const char *p, size_t n) { sse_feed_impl(s, p, p + n, 1); }

/* ------------------------------------------------------------------------------------ */
/* the HTTP/1.x response parser                                                         */

#define HEAD_LINE_MAX 256     /* longer head lines are kept truncated */
#define HEAD_MAX (64 * 1024)  /* a longer response head is an error */

enum {
    H_STATUS, H_HEADER,                           /* the head, line by line */
    B_SIZE, B_EXT, B_SIZE_LF, B_DATA, B_DATA_CR, B_DATA_LF, /* chunked */
    B_TRAILER, B_TRAILER_LINE, B_TRAILER_LF,
    B_LENGTH, B_CLOSE, H_DONE
};

typedef struct {
    uint8_t state;
    uint8_t chunked, has_length, conn_close, conn_keep_alive, keep_alive, minor;
    uint8_t head_done, digits;
    uint16_t status, line_len;
    uint32_t head_bytes;
    uint64_t remaining;       /* of the chunk (B_DATA) or of the body (B_LENGTH) */
    uint64_t content_length;
    uint64_t body_bytes;      /* de-framed body bytes so far */
    char line[HEAD_LINE_MAX];
} http_t;

static char h_err[300];

static void http_init(http_t *h)
{
    memset(h, 0, sizeof *h);
}

static int is_ows(char c) { return c == ' ' || c == '\t'; }

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* token (case-insensitive) is one of the comma-separated items of list? */
static int has_token(const char *list, const char *token)
{
    size_t n = strlen(token);
    const char *p = list;
    while (*p) {
        while (*p == ',' || is_ows(*p))
            p++;
        const char *q = p;
        while (*q && *q != ',')
            q++;
        const char *e = q;
        while (e > p && is_ows(e[-1]))
            e--;
        if ((size_t)(e - p) == n && strncasecmp(p, token, n) == 0)
            return 1;
        p = q;
    }
    return 0;
}

static int http_status_line(http_t *h)
{
    const char *l = h->line;
    if (h->line_len == 0) /* tolerate empty lines before the status line */
        return 0;
    if (h->line_len < 12 || strncmp(l, "HTTP/", 5) != 0 || l[5] < '0' || l[5] > '9' ||
        l[6] != '.' || l[7] < '0' || l[7] > '9' || l[8] != ' ' || l[9] < '0' ||
        l[9] > '9' || l[10] < '0' || l[10] > '9' || l[11] < '0' || l[11] > '9' ||
        (l[12] != ' ' && l[12] != '\0')) {
        snprintf(h_err, sizeof h_err, "not an HTTP/1.x status line: \"%.80s\"", l);
        return -1;
    }
    h->minor = (uint8_t)(l[7] - '0');
    h->status = (uint16_t)((l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0'));
    h->state = H_HEADER;
    return 0;
}

static int http_head_end(http_t *h)
{
    if (h->status >= 100 && h->status < 200 && h->status != 101) {
        /* an interim response (100 Continue...): the real one follows */
        uint32_t head_bytes = h->head_bytes;
        http_init(h);
        h->head_bytes = head_bytes;
        return 0;
    }
    h->head_done = 1;
    h->keep_alive = h->minor >= 1 ? !h->conn_close : (h->conn_keep_alive && !h->conn_close);
    if (h->status == 204 || h->status == 304 || h->status == 101) {
        h->state = H_DONE;
    } else if (h->chunked) {
        h->state = B_SIZE;
        h->remaining = 0;
        h->digits = 0;
    } else if (h->has_length) {
        h->remaining = h->content_length;
        h->state = h->remaining ? B_LENGTH : H_DONE;
    } else {
        h->state = B_CLOSE;
        h->keep_alive = 0;
    }
    return 0;
}

static int http_header_line(http_t *h)
{
    if (h->line_len == 0)
        return http_head_end(h);
    char *line = h->line;
    char *colon = memchr(line, ':', h->line_len);
    if (!colon) {
        snprintf(h_err, sizeof h_err, "malformed header line: \"%.80s\"", line);
        return -1;
    }
    size_t name_len = (size_t)(colon - line);
    char *value = colon + 1;
    while (is_ows(*value))
        value++;
    char *vend = line + h->line_len;
    while (vend > value && is_ows(vend[-1]))
        vend--;
    *vend = '\0';
    if (name_len == 14 && strncasecmp(line, "content-length", 14) == 0) {
        uint64_t v = 0;
        const char *p = value;
        if (!*p)
            goto bad_length;
        for (; *p; p++) {
            if (*p < '0' || *p > '9' || v > UINT64_MAX / 10 - 10)
                goto bad_length;
            v = v * 10 + (uint64_t)(*p - '0');
        }
        if (h->has_length && v != h->content_length)
            goto bad_length;
        h->has_length = 1;
        h->content_length = v;
    } else if (name_len == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
        const char *last = strrchr(value, ',');
        last = last ? last + 1 : value;
        while (is_ows(*last))
            last++;
        if (strcasecmp(last, "chunked") == 0) {
            h->chunked = 1;
        } else if (has_token(value, "chunked") || strcasecmp(last, "identity") != 0) {
            snprintf(h_err, sizeof h_err, "unsupported Transfer-Encoding: \"%.80s\"", value);
            return -1;
        }
    } else if (name_len == 10 && strncasecmp(line, "connection", 10) == 0) {
        if (has_token(value, "close"))
            h->conn_close = 1;
        if (has_token(value, "keep-alive"))
            h->conn_keep_alive = 1;
    }
    return 0;
bad_length:
    snprintf(h_err, sizeof h_err, "bad Content-Length: \"%.80s\"", value);
    return -1;
}

static inline void http_body(http_t *h, sse_t *s, int capture, const char *p, size_t n)
{
    h->body_bytes += n;
    if (s) {
        if (capture)
            sse_feed_capture(s, p, n);
        else
            sse_feed(s, p, n);
    }
}

/* Feeds n bytes; body bytes go to s (NULL: dropped). Returns the bytes consumed (less
 * than n only if the response ended: state H_DONE), or -1 with h_err set. */
static long http_feed(http_t *h, sse_t *s, int capture, const char *buf, size_t n)
{
    const char *p = buf, *const end = buf + n;
    while (p < end) {
        switch (h->state) {
        case H_STATUS:
        case H_HEADER: {
            const char *q = memchr(p, '\n', (size_t)(end - p));
            const char *stop = q ? q : end;
            size_t k = (size_t)(stop - p);
            h->head_bytes += (uint32_t)(k + (q != NULL));
            if (h->head_bytes > HEAD_MAX) {
                snprintf(h_err, sizeof h_err, "response head longer than %d bytes", HEAD_MAX);
                return -1;
            }
            size_t room = HEAD_LINE_MAX - 1 - h->line_len;
            size_t keep = k < room ? k : room;
            memcpy(h->line + h->line_len, p, keep);
            h->line_len = (uint16_t)(h->line_len + keep);
            p = stop;
            if (!q)
                continue;
            p++;
            if (h->line_len && h->line[h->line_len - 1] == '\r')
                h->line_len--;
            h->line[h->line_len] = '\0';
            int r = h->state == H_STATUS ? http_status_line(h) : http_header_line(h);
            h->line_len = 0;
            if (r < 0)
                return -1;
            if (h->state == H_DONE)
                return p - buf;
            continue;
        }
        case B_SIZE: {
            const char c = *p++;
            int v = hex_value(c);
            if (v >= 0) {
                if (h->remaining >> 56) {
                    snprintf(h_err, sizeof h_err, "chunk size too large");
                    return -1;
                }
                h->remaining = h->remaining * 16 + (uint64_t)v;
                h->digits = 1;
                continue;
            }
            if (!h->digits) {
                snprintf(h_err, sizeof h_err, "bad chunk size line (byte 0x%02x)",
                         (unsigned char)c);
                return -1;
            }
            if (c == ';' || is_ows(c)) {
                h->state = B_EXT;
            } else if (c == '\r') {
                h->state = B_SIZE_LF;
            } else if (c == '\n') {
                h->digits = 0;
                h->state = h->remaining ? B_DATA : B_TRAILER;
            } else {
                snprintf(h_err, sizeof h_err, "bad chunk size line (byte 0x%02x)",
                         (unsigned char)c);
                return -1;
            }
            continue;
        }
        case B_EXT: { /* chunk extensions (and whitespace): skipped to the line end */
            const char c = *p++;
            if (c == '\r') {
                h->state = B_SIZE_LF;
            } else if (c == '\n') {
                h->digits = 0;
                h->state = h->remaining ? B_DATA : B_TRAILER;
            }
            continue;
        }
        case B_SIZE_LF:
            if (*p++ != '\n') {
                snprintf(h_err, sizeof h_err, "chunk size line: CR not followed by LF");
                return -1;
            }
            h->digits = 0;
            h->state = h->remaining ? B_DATA : B_TRAILER;
            continue;
        case B_DATA: {
            size_t avail = (size_t)(end - p);
            size_t k = avail < h->remaining ? avail : (size_t)h->remaining;
            http_body(h, s, capture, p, k);
            p += k;
            h->remaining -= k;
            if (!h->remaining)
                h->state = B_DATA_CR;
            continue;
        }
        case B_DATA_CR: {
            const char c = *p++;
            if (c == '\r') {
                h->state = B_DATA_LF;
            } else if (c == '\n') {
                h->state = B_SIZE;
            } else {
                snprintf(h_err, sizeof h_err, "chunk data not followed by CRLF");
                return -1;
            }
            continue;
        }
        case B_DATA_LF:
            if (*p++ != '\n') {
                snprintf(h_err, sizeof h_err, "chunk data not followed by CRLF");
                return -1;
            }
            h->state = B_SIZE;
            continue;
        case B_TRAILER: { /* the start of a trailer line, or the final empty line */
            const char c = *p++;
            if (c == '\r') {
                h->state = B_TRAILER_LF;
            } else if (c == '\n') {
                h->state = H_DONE;
                return p - buf;
            } else {
                h->state = B_TRAILER_LINE;
            }
            continue;
        }
        case B_TRAILER_LINE: {
            const char *q = memchr(p, '\n', (size_t)(end - p));
            if (!q) {
                p = end;
            } else {
                p = q + 1;
                h->state = B_TRAILER;
            }
            continue;
        }
        case B_TRAILER_LF:
            if (*p++ != '\n') {
                snprintf(h_err, sizeof h_err, "last chunk: CR not followed by LF");
                return -1;
            }
            h->state = H_DONE;
            return p - buf;
        case B_LENGTH: {
            size_t avail = (size_t)(end - p);
            size_t k = avail < h->remaining ? avail : (size_t)h->remaining;
            http_body(h, s, capture, p, k);
            p += k;
            h->remaining -= k;
            if (!h->remaining) {
                h->state = H_DONE;
                return p - buf;
            }
            continue;
        }
        case B_CLOSE:
            http_body(h, s, capture, p, (size_t)(end - p));
            p = end;
            continue;
        default: /* H_DONE */
            return p - buf;
        }
    }
    return p - buf;
}

/* Is the response complete if the connection ends now? */
static int http_complete_at_eof(const http_t *h)
{
    return h->state == H_DONE || h->state == B_CLOSE;
}

/* ------------------------------------------------------------------------------------ */
/* options                                                                              */

enum { M_STREAM = 1, M_FANOUT = 2, M_LATENCY = 4, M_HOLD = 8, M_COUNT = 16, M_TICKS = 32,
       M_STREAMS = 64 };
#define M_NET (M_STREAM | M_FANOUT | M_LATENCY | M_HOLD | M_TICKS | M_STREAMS)
#define M_SUBS (M_FANOUT | M_LATENCY | M_HOLD | M_TICKS | M_STREAMS)

static struct {
    const char *host, *path, *sub_path, *publish_path, *publish_body, *pub_path;
    const char *then_publish_path;
    double expect, timeout, subscribers, events, size, publish_port, publish_requests;
    double registered_after_ms, rate, duration, slow, slow_rcvbuf, drain, seconds;
    double then_events, register_timeout, conc, read_size, seed, rcvbuf, port;
    int have_expect, have_seed, have_timeout;
} O;

typedef struct {
    const char *name;
    int modes;
    int is_string;
    void *ptr;
    int *seen;
} opt_t;

static const opt_t OPTIONS[] = {
    {"--host", M_NET, 1, &O.host, NULL},
    {"--port", M_NET, 0, &O.port, NULL},
    {"--timeout", M_NET, 0, &O.timeout, &O.have_timeout},
    {"--register-timeout", M_SUBS, 0, &O.register_timeout, NULL},
    {"--connect-concurrency", M_SUBS, 0, &O.conc, NULL},
    {"--registered-after-ms", M_SUBS, 0, &O.registered_after_ms, NULL},
    {"--path", M_STREAM, 1, &O.path, NULL},
    {"--expect", M_STREAM, 0, &O.expect, &O.have_expect},
    {"--rcvbuf", M_STREAM, 0, &O.rcvbuf, NULL},
    {"--subscribers", M_SUBS, 0, &O.subscribers, NULL},
    {"--sub-path", M_SUBS, 1, &O.sub_path, NULL},
    {"--events", M_FANOUT | M_TICKS | M_STREAMS, 0, &O.events, NULL},
    {"--size", M_FANOUT, 0, &O.size, NULL},
    {"--publish-path", M_FANOUT, 1, &O.publish_path, NULL},
    {"--publish-port", M_FANOUT | M_HOLD, 0, &O.publish_port, NULL},
    {"--publish-requests", M_FANOUT, 0, &O.publish_requests, NULL},
    {"--publish-body", M_FANOUT, 1, &O.publish_body, NULL},
    {"--rate", M_LATENCY, 0, &O.rate, NULL},
    {"--duration", M_LATENCY, 0, &O.duration, NULL},
    {"--pub-path", M_LATENCY, 1, &O.pub_path, NULL},
    {"--pub-port", M_LATENCY, 0, &O.publish_port, NULL},
    {"--slow", M_LATENCY, 0, &O.slow, NULL},
    {"--slow-rcvbuf", M_LATENCY, 0, &O.slow_rcvbuf, NULL},
    {"--drain", M_LATENCY, 0, &O.drain, NULL},
    {"--seconds", M_HOLD, 0, &O.seconds, NULL},
    {"--then-publish-path", M_HOLD, 1, &O.then_publish_path, NULL},
    {"--then-events", M_HOLD, 0, &O.then_events, NULL},
    {"--read-size", M_COUNT, 0, &O.read_size, NULL},
    {"--seed", M_COUNT, 0, &O.seed, &O.have_seed},
};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_error, sizeof g_error, fmt, ap);
    va_end(ap);
    printf("{\"error\": ");
    json_string(g_error);
    printf("}\n");
    fprintf(stderr, "loadclient: %s\n\n%s", g_error, USAGE);
    return 2;
}

static int parse_options(int mode, int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        const opt_t *o = NULL;
        for (size_t k = 0; k < sizeof OPTIONS / sizeof OPTIONS[0]; k++)
            if (strcmp(argv[i], OPTIONS[k].name) == 0 && (OPTIONS[k].modes & mode))
                o = &OPTIONS[k];
        if (!o)
            return usage_error("unknown option for %s: %s", argv[1], argv[i]);
        if (i + 1 >= argc)
            return usage_error("%s needs a value", argv[i]);
        const char *v = argv[++i];
        if (o->is_string) {
            *(const char **)o->ptr = v;
        } else {
            char *e;
            errno = 0;
            double d = strtod(v, &e);
            if (errno || e == v || *e || !isfinite(d) || d < 0)
                return usage_error("%s needs a number >= 0, got \"%s\"", o->name, v);
            *(double *)o->ptr = d;
        }
        if (o->seen)
            *o->seen = 1;
    }
    return 0;
}

static int is_int(double d) { return d == floor(d) && d < 1e15; }

/* ------------------------------------------------------------------------------------ */
/* connections and the event loop                                                       */

enum { K_SUB, K_STREAM, K_PUB };
enum { P_NEW, P_CONNECTING, P_IDLE, P_SENDING, P_READING, P_CLOSED };

typedef struct conn {
    int fd;
    uint32_t id;
    uint8_t kind, phase;
    uint8_t slow, capture, headed, registered, done, paused;
    const char *req;
    uint32_t req_len, req_off;
    int64_t head_ns;
    uint64_t base;       /* events counted before the measured publish */
    uint64_t wire_bytes;
    http_t http;
    sse_t sse;
} conn_t;

#define READ_BUF (1 << 20)
#define MAX_EVENTS 4096

static char g_buf[READ_BUF];

static struct {
    int ep;
    struct sockaddr_storage addr, pub_addr;
    socklen_t addr_len, pub_addr_len;
    char host_header[300], pub_host_header[300];
    int mode;
    /* subscribers */
    conn_t *subs;
    int nsubs, launched, inflight, conc;
    int headed, registered, done, closed;
    const char *sub_req;
    uint32_t sub_req_len;
    int rcvbuf_slow;
    int64_t reg_after_ns;
    conn_t **regq;       /* waiting for --registered-after-ms, in head order */
    int regq_head, regq_tail;
    int counting;        /* the measured publish has started: track per-subscriber targets */
    uint64_t target;
    int64_t t_done;
    double cpu_done;
    /* the stream / publisher connection */
    conn_t one;
    int stream_done;
    int pub_outstanding;
    uint64_t pub_ok;
    void (*tick)(int64_t now);
    int64_t tick_at;     /* 0: no timer */
} G;

static int set_events(conn_t *c, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(G.ep, op, c->fd, &ev) < 0) {
        fail("epoll_ctl: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void conn_close(conn_t *c)
{
    if (c->phase == P_CLOSED || c->phase == P_NEW)
        return;
    close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
    c->phase = P_CLOSED;
}

static const char *conn_name(const conn_t *c, char *buf, size_t n)
{
    if (c->kind == K_SUB)
        snprintf(buf, n, "subscriber %u", c->id);
    else if (c->kind == K_STREAM)
        snprintf(buf, n, "the stream connection");
    else
        snprintf(buf, n, "the publisher connection");
    return buf;
}

static void conn_send(conn_t *c);

static int conn_open(conn_t *c, const struct sockaddr_storage *addr, socklen_t len, int rcvbuf)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail("socket: %s (open connections: %d)", strerror(errno), G.launched);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    c->fd = fd;
    c->phase = P_CONNECTING;
    c->req_off = 0;
    http_init(&c->http);
    if (connect(fd, (const struct sockaddr *)addr, len) < 0 && errno != EINPROGRESS) {
        char name[64];
        fail("%s: connect: %s", conn_name(c, name, sizeof name), strerror(errno));
        close(fd);
        c->phase = P_CLOSED;
        return -1;
    }
    return set_events(c, EPOLLOUT, EPOLL_CTL_ADD);
}

static void conn_connected(conn_t *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        char name[64];
        fail("%s: connect: %s", conn_name(c, name, sizeof name), strerror(err));
        conn_close(c);
        return;
    }
    if (c->req) {
        c->phase = P_SENDING;
        conn_send(c);
    } else {
        c->phase = P_IDLE;
        set_events(c, EPOLLIN, EPOLL_CTL_MOD);
    }
}

/* Sends c->req from c->req_off; waits for EPOLLOUT if the socket is full. */
static void conn_send(conn_t *c)
{
    while (c->req_off < c->req_len) {
        ssize_t n = send(c->fd, c->req + c->req_off, c->req_len - c->req_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->req_off += (uint32_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_events(c, EPOLLOUT, EPOLL_CTL_MOD);
            return;
        }
        char name[64];
        fail("%s: send: %s", conn_name(c, name, sizeof name), strerror(errno));
        conn_close(c);
        return;
    }
    c->phase = P_READING;
    set_events(c, EPOLLIN, EPOLL_CTL_MOD);
}

/* Starts sending req on an idle (connected) connection. */
static void conn_request(conn_t *c, const char *req, uint32_t len)
{
    c->req = req;
    c->req_len = len;
    c->req_off = 0;
    c->phase = P_SENDING;
    conn_send(c);
}

static void launch_subs(void)
{
    while (G.launched < G.nsubs && G.inflight < G.conc && !g_error[0]) {
        conn_t *c = &G.subs[G.launched++];
        G.inflight++;
        c->req = G.sub_req;
        c->req_len = G.sub_req_len;
        if (conn_open(c, &G.addr, G.addr_len, c->slow ? G.rcvbuf_slow : 0) < 0)
            return;
    }
}

static void sub_registered(conn_t *c)
{
    c->registered = 1;
    G.registered++;
    if (c->slow) { /* a slow consumer: never read again */
        epoll_ctl(G.ep, EPOLL_CTL_DEL, c->fd, NULL);
        c->paused = 1;
    }
}

static void sub_check_done(conn_t *c)
{
    if (G.counting && !c->done && c->sse.events - c->base >= G.target) {
        c->done = 1;
        if (++G.done == G.nsubs) {
            G.t_done = now_ns();
            G.cpu_done = cpu_now();
        }
    }
}

static void sub_data(conn_t *c, const char *buf, size_t n)
{
    char name[64];
    long used = http_feed(&c->http, &c->sse, c->capture, buf, n);
    if (used < 0) {
        fail("%s: %s", conn_name(c, name, sizeof name), h_err);
        return;
    }
    if (!c->headed && c->http.head_done) {
        c->headed = 1;
        c->head_ns = now_ns();
        G.headed++;
        G.inflight--;
        if (c->http.status < 200 || c->http.status > 299) {
            fail("%s: HTTP status %u for GET %s", conn_name(c, name, sizeof name),
                 c->http.status, O.sub_path);
            return;
        }
        if (G.reg_after_ns > 0)
            G.regq[G.regq_tail++] = c;
        launch_subs();
    }
    if (c->headed && !c->registered && c->http.body_bytes > 0)
        sub_registered(c);
    sub_check_done(c);
    if (c->http.state == H_DONE) { /* the server ended the stream */
        conn_close(c);
        G.closed++;
        if (!(G.counting && c->done) && !(g_ticks_per && c->sse.events >= g_ticks_per))
            fail("%s: the server ended the stream after %" PRIu64 " events",
                 conn_name(c, name, sizeof name), c->sse.events);
    }
}

static void stream_data(conn_t *c, const char *buf, size_t n)
{
    long used = http_feed(&c->http, &c->sse, 0, buf, n);
    if (used < 0) {
        fail("stream: %s", h_err);
        return;
    }
    if (c->http.state == H_DONE) {
        G.t_done = now_ns();
        G.cpu_done = cpu_now();
        G.stream_done = 1;
        conn_close(c);
    }
}

static const char *g_pub_what; /* for messages: "POST /publish..." */

static void pub_response_done(conn_t *c)
{
    if (c->http.status < 200 || c->http.status > 299) {
        fail("publisher: HTTP status %u for %s", c->http.status, g_pub_what);
        return;
    }
    G.pub_ok++;
    G.pub_outstanding = 0;
    if (!c->http.keep_alive)
        conn_close(c); /* reconnected for the next request */
    else
        c->phase = P_IDLE;
    http_init(&c->http);
}

static void pub_data(conn_t *c, const char *buf, size_t n)
{
    while (n > 0 && c->phase != P_CLOSED) {
        if (!G.pub_outstanding) {
            fail("publisher: unexpected bytes from the server: \"%.40s\"", buf);
            return;
        }
        long used = http_feed(&c->http, NULL, 0, buf, n);
        if (used < 0) {
            fail("publisher: %s", h_err);
            return;
        }
        buf += used;
        n -= (size_t)used;
        if (c->http.state != H_DONE)
            return;
        pub_response_done(c);
        if (g_error[0])
            return;
    }
}

static void conn_eof(conn_t *c)
{
    char name[64];
    if (c->kind == K_STREAM) {
        if (http_complete_at_eof(&c->http) && c->http.head_done) {
            G.t_done = now_ns();
            G.cpu_done = cpu_now();
            G.stream_done = 1;
        } else {
            fail("stream: the connection closed before the end of the response (%" PRIu64
                 " events counted)", c->sse.events);
        }
    } else if (c->kind == K_PUB) {
        if (G.pub_outstanding) {
            if (http_complete_at_eof(&c->http) && c->http.head_done) {
                pub_response_done(c);
            } else {
                fail("publisher: the connection closed before the response to %s",
                     g_pub_what);
            }
        }
    } else {
        G.closed++;
        if (!(G.counting && c->done))
            fail("%s: the server closed the connection after %" PRIu64 " events%s",
                 conn_name(c, name, sizeof name), c->sse.events,
                 c->headed ? "" : " (before the response head)");
    }
    conn_close(c);
}

static void conn_readable(conn_t *c)
{
    for (int i = 0; i < 8; i++) {
        ssize_t n = recv(c->fd, g_buf, READ_BUF, 0);
        if (n > 0) {
            if (G.mode == M_LATENCY)
                g_t_read = now_ns();
            c->wire_bytes += (uint64_t)n;
            if (c->kind == K_SUB)
                sub_data(c, g_buf, (size_t)n);
            else if (c->kind == K_STREAM)
                stream_data(c, g_buf, (size_t)n);
            else
                pub_data(c, g_buf, (size_t)n);
            if (g_error[0] || c->phase == P_CLOSED || c->paused || n < READ_BUF)
                return;
            continue;
        }
        if (n == 0) {
            conn_eof(c);
            return;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        if (errno == EINTR)
            continue;
        if (errno == ECONNRESET && c->kind == K_PUB && !G.pub_outstanding) {
            conn_close(c); /* an idle keep-alive connection dropped: reconnect later */
            return;
        }
        char name[64];
        fail("%s: recv: %s", conn_name(c, name, sizeof name), strerror(errno));
        conn_close(c);
        return;
    }
}

static void regq_service(int64_t now)
{
    while (G.regq_head < G.regq_tail) {
        conn_t *c = G.regq[G.regq_head];
        if (c->head_ns + G.reg_after_ns > now)
            break;
        G.regq_head++;
        if (!c->registered && c->phase != P_CLOSED)
            sub_registered(c);
    }
}

enum { PUMP_OK = 0, PUMP_ERROR = -1, PUMP_TIMEOUT = -2 };

/* Runs the loop until until() is true (PUMP_OK), a failure (PUMP_ERROR) or the deadline. */
static int pump(int (*until)(void), int64_t deadline)
{
    static struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        if (g_error[0])
            return PUMP_ERROR;
        int64_t now = now_ns();
        regq_service(now);
        if (G.tick)
            G.tick(now);
        if (g_error[0])
            return PUMP_ERROR;
        if (until())
            return PUMP_OK;
        if (now >= deadline)
            return PUMP_TIMEOUT;
        int64_t wake = deadline;
        if (G.tick_at && G.tick_at < wake)
            wake = G.tick_at;
        if (G.regq_head < G.regq_tail && G.regq[G.regq_head]->head_ns + G.reg_after_ns < wake)
            wake = G.regq[G.regq_head]->head_ns + G.reg_after_ns;
        int timeout = wake <= now ? 0 : (int)((wake - now + 999999) / 1000000);
        int n = epoll_wait(G.ep, evs, MAX_EVENTS, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail("epoll_wait: %s", strerror(errno));
            return PUMP_ERROR;
        }
        g_t_wake = now_ns();
        for (int i = 0; i < n && !g_error[0]; i++) {
            conn_t *c = evs[i].data.ptr;
            uint32_t e = evs[i].events;
            if (c->phase == P_CLOSED || c->paused)
                continue;
            if (c->phase == P_CONNECTING) {
                conn_connected(c);
                continue;
            }
            if (c->phase == P_SENDING) {
                if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                    conn_send(c);
                continue;
            }
            if (e & (EPOLLIN | EPOLLERR | EPOLLHUP))
                conn_readable(c);
        }
    }
}

static int resolve(const char *host, int port, struct sockaddr_storage *addr, socklen_t *len)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    int r = getaddrinfo(host, service, &hints, &res);
    if (r != 0 || !res) {
        fail("cannot resolve %s: %s", host, gai_strerror(r));
        return -1;
    }
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int raise_nofile(int needed)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)needed > rl.rlim_cur) {
        fail("%d connections need %d file descriptors; RLIMIT_NOFILE is %lu (raise the hard "
             "limit: ulimit -Hn)", needed - 16, needed, (unsigned long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

static int net_setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (!O.host)
        O.host = "127.0.0.1";
    if (!is_int(O.port) || O.port < 1 || O.port > 65535) {
        fail("--port is required (1-65535)");
        return -1;
    }
    int port = (int)O.port;
    int pub_port = O.publish_port > 0 ? (int)O.publish_port : port;
    if (resolve(O.host, port, &G.addr, &G.addr_len) < 0 ||
        resolve(O.host, pub_port, &G.pub_addr, &G.pub_addr_len) < 0)
        return -1;
    const char *bracket = strchr(O.host, ':') ? "[" : "";
    const char *close_bracket = strchr(O.host, ':') ? "]" : "";
    snprintf(G.host_header, sizeof G.host_header, "%s%s%s:%d", bracket, O.host,
             close_bracket, port);
    snprintf(G.pub_host_header, sizeof G.pub_host_header, "%s%s%s:%d", bracket, O.host,
             close_bracket, pub_port);
    G.ep = epoll_create1(EPOLL_CLOEXEC);
    if (G.ep < 0) {
        fail("epoll_create1: %s", strerror(errno));
        return -1;
    }
    G.one.fd = -1;
    G.one.phase = P_NEW;
    return 0;
}

static char *format_alloc(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *format_alloc(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    if (!s) {
        fputs("loadclient: out of memory\n", stderr);
        exit(1);
    }
    return s;
}

/* ------------------------------------------------------------------------------------ */
/* subscribers                                                                          */

static int until_registered(void) { return G.registered == G.nsubs; }

/* Opens O.subscribers subscribers (the first `slow` of them slow) and waits until all are
 * registered. */
static int open_subscribers(int slow)
{
    double s = O.subscribers;
    if (!is_int(s) || s < 1 || s > 1000000) {
        fail("--subscribers must be an integer from 1 to 1000000");
        return -1;
    }
    G.nsubs = (int)s;
    if (raise_nofile(G.nsubs + 16) < 0)
        return -1;
    G.subs = calloc((size_t)G.nsubs, sizeof *G.subs);
    G.regq = calloc((size_t)G.nsubs, sizeof *G.regq);
    if (!G.subs || !G.regq) {
        fail("out of memory for %d subscribers", G.nsubs);
        return -1;
    }
    for (int i = 0; i < G.nsubs; i++) {
        G.subs[i].id = (uint32_t)i;
        G.subs[i].fd = -1;
        G.subs[i].kind = K_SUB;
        G.subs[i].slow = i < slow;
        /* ticks: sampled from the first event on (streams: counted only) */
        G.subs[i].capture = g_ticks_per > 0 && G.mode == M_TICKS;
        sse_init(&G.subs[i].sse);
    }
    if (!O.sub_path)
        O.sub_path = "/events";
    G.sub_req = format_alloc("GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n"
                             "Cache-Control: no-cache\r\n\r\n", O.sub_path, G.host_header);
    G.sub_req_len = (uint32_t)strlen(G.sub_req);
    G.conc = O.conc >= 1 ? (int)O.conc : 256;
    G.reg_after_ns = (int64_t)(O.registered_after_ms * 1e6);
    G.rcvbuf_slow = (int)O.slow_rcvbuf;
    int64_t start = now_ns();
    double limit = O.register_timeout > 0 ? O.register_timeout : 120;
    int64_t deadline = start + (int64_t)(limit * 1e9);
    launch_subs();
    int r;
    int64_t next_report = start + 2000000000LL;
    for (;;) {
        int64_t until = deadline < next_report ? deadline : next_report;
        r = pump(until_registered, until);
        if (r != PUMP_TIMEOUT || now_ns() >= deadline)
            break;
        fprintf(stderr, "loadclient: %d/%d subscribers registered (%d with a response head)\n",
                G.registered, G.nsubs, G.headed);
        next_report += 2000000000LL;
    }
    if (r == PUMP_TIMEOUT)
        fail("timed out after %.0f s: %d of %d subscribers registered (%d connections "
             "opened, %d with a response head%s)", limit, G.registered, G.nsubs, G.launched,
             G.headed, G.reg_after_ns ? "" : "; a server that sends no bytes on subscribe "
             "needs --registered-after-ms");
    if (r != PUMP_OK)
        return -1;
    fprintf(stderr, "loadclient: %d subscribers registered in %.3f s\n", G.nsubs,
            (now_ns() - start) / 1e9);
    return 0;
}

/* Starts counting events from now on, for `target` events per subscriber. */
static void start_counting(uint64_t target)
{
    for (int i = 0; i < G.nsubs; i++) {
        G.subs[i].base = G.subs[i].sse.events;
        G.subs[i].done = 0;
    }
    G.done = 0;
    G.target = target;
    G.counting = 1;
    for (int i = 0; i < G.nsubs; i++)
        if (!G.subs[i].slow)
            sub_check_done(&G.subs[i]);
}

/* ------------------------------------------------------------------------------------ */
/* the publisher (fanout and hold): K requests one after the other                     */

static const char *g_pub_req;
static uint32_t g_pub_req_len;
static uint64_t g_pub_total, g_pub_sent;
static int64_t g_pub_t0;
static double g_pub_cpu0;

static void publish_tick(int64_t now)
{
    (void)now;
    conn_t *c = &G.one;
    if (g_pub_sent >= g_pub_total || G.pub_outstanding)
        return;
    if (c->phase == P_NEW || c->phase == P_CLOSED) {
        c->req = NULL;
        conn_open(c, &G.pub_addr, G.pub_addr_len, 0);
        return;
    }
    if (c->phase != P_IDLE)
        return;
    if (g_pub_sent == 0) { /* the clock starts just before the first request */
        g_pub_t0 = now_ns();
        g_pub_cpu0 = cpu_now();
    }
    g_pub_sent++;
    G.pub_outstanding = 1;
    conn_request(c, g_pub_req, g_pub_req_len);
}

static void publisher_init(const char *path, const char *body, uint64_t requests)
{
    if (!body)
        body = "";
    g_pub_req = format_alloc("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\n"
                             "Content-Length: %zu\r\n\r\n%s", path, G.pub_host_header,
                             strlen(body), body);
    g_pub_req_len = (uint32_t)strlen(g_pub_req);
    g_pub_what = format_alloc("POST %s", path);
    g_pub_total = requests;
    g_pub_sent = 0;
    G.one.kind = K_PUB;
    G.tick = publish_tick;
}

static int until_all_done(void) { return G.done == G.nsubs; }
static int until_published(void) { return G.pub_ok == g_pub_total; }

/* ------------------------------------------------------------------------------------ */
/* modes                                                                                */

static int until_stream_done(void) { return G.stream_done; }

static int mode_stream(void)
{
    conn_t *c = &G.one;
    int64_t t0 = 0, t1 = 0;
    double cpu0 = cpu_now(), cpu1 = 0;
    if (net_setup() == 0) {
        if (!O.path) {
            fail("--path is required");
        } else {
            double timeout = O.have_timeout ? O.timeout : 60;
            int64_t deadline = now_ns() + (int64_t)(timeout * 1e9);
            char *req = format_alloc("GET %s HTTP/1.1\r\nHost: %s\r\nAccept: "
                                     "text/event-stream\r\n\r\n", O.path, G.host_header);
            c->kind = K_STREAM;
            sse_init(&c->sse);
            int rcvbuf = O.rcvbuf > 0 ? (int)O.rcvbuf : 4 << 20;
            if (conn_open(c, &G.addr, G.addr_len, rcvbuf) == 0) {
                /* connect first: the clock starts just before the request is sent */
                while (c->phase == P_CONNECTING && !g_error[0]) {
                    struct epoll_event ev;
                    int n = epoll_wait(G.ep, &ev, 1, 100);
                    if (n > 0)
                        conn_connected(c);
                    else if (now_ns() > deadline)
                        fail("timed out connecting to %s", G.host_header);
                }
                if (!g_error[0]) {
                    t0 = now_ns();
                    cpu0 = cpu_now();
                    conn_request(c, req, (uint32_t)strlen(req));
                    int r = pump(until_stream_done, deadline);
                    if (r == PUMP_TIMEOUT)
                        fail("timed out after %.1f s: %" PRIu64 " events counted", timeout,
                             c->sse.events);
                }
            }
            free(req);
        }
    }
    if (G.stream_done) {
        t1 = G.t_done;
        cpu1 = G.cpu_done;
    } else {
        t1 = now_ns();
        cpu1 = cpu_now();
    }
    if (!t0)
        t0 = t1;
    if (!g_error[0] && O.have_expect && (double)c->sse.events != O.expect)
        fail("counted %" PRIu64 " events, expected %.0f", c->sse.events, O.expect);
    printf("{\"events\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"body_bytes\": %" PRIu64
           ", \"complete\": %s, \"seconds\": %.6f, \"cpu_seconds\": %.6f, "
           "\"cpu_seconds_total\": %.6f",
           c->sse.events, c->wire_bytes, c->http.body_bytes, G.stream_done ? "true" : "false",
           (t1 - t0) / 1e9, cpu1 - cpu0, cpu_now());
    return json_end();
}

static int mode_fanout(void)
{
    int64_t t0 = 0, t1 = 0;
    double cpu0 = 0, cpu1 = 0;
    uint64_t m = 0;
    if (!is_int(O.events) || O.events < 1)
        fail("--events must be an integer >= 1");
    else
        m = (uint64_t)O.events;
    if (!g_error[0] && net_setup() == 0 && open_subscribers(0) == 0) {
        int size = O.size > 0 ? (int)O.size : 64;
        char *path = O.publish_path
                         ? (char *)O.publish_path
                         : format_alloc("/publish?n=%" PRIu64 "&size=%d", m, size);
        uint64_t requests = O.publish_requests >= 1 ? (uint64_t)O.publish_requests : 1;
        publisher_init(path, O.publish_body, requests);
        start_counting(m);
        double timeout = O.have_timeout ? O.timeout : 120;
        int64_t deadline = now_ns() + (int64_t)(timeout * 1e9);
        int r = pump(until_all_done, deadline);
        if (r == PUMP_OK) {
            t1 = G.t_done;
            cpu1 = G.cpu_done;
            /* the publish responses must come back too (not timed) */
            r = pump(until_published, now_ns() + 30 * 1000000000LL);
            if (r == PUMP_TIMEOUT)
                fail("no response to %s within 30 s (%" PRIu64 " of %" PRIu64 ")", g_pub_what,
                     G.pub_ok, g_pub_total);
        } else {
            t1 = now_ns();
            cpu1 = cpu_now();
            if (r == PUMP_TIMEOUT)
                fail("timed out after %.1f s: %d of %d subscribers got all %" PRIu64
                     " events (%" PRIu64 " of %" PRIu64 " publish requests answered)",
                     timeout, G.done, G.nsubs, m, G.pub_ok, g_pub_total);
        }
        t0 = g_pub_t0 ? g_pub_t0 : t1;
        cpu0 = g_pub_sent ? g_pub_cpu0 : cpu1;
    }
    uint64_t deliveries = 0, extra = 0;
    for (int i = 0; i < G.nsubs && G.counting; i++) {
        uint64_t got = G.subs[i].sse.events - G.subs[i].base;
        deliveries += got < m ? got : m;
        extra += got > m ? got - m : 0;
    }
    uint64_t expected = (uint64_t)G.nsubs * m;
    uint64_t missing = G.counting ? expected - deliveries : expected;
    if (!g_error[0] && missing)
        fail("%" PRIu64 " of %" PRIu64 " deliveries missing", missing, expected);
    if (!g_error[0] && extra)
        fail("%" PRIu64 " events more than the %" PRIu64 " published were received", extra, m);
    printf("{\"subscribers\": %d, \"events\": %" PRIu64 ", \"deliveries\": %" PRIu64
           ", \"missing\": %" PRIu64 ", \"seconds\": %.6f, \"cpu_seconds\": %.6f, "
           "\"cpu_seconds_total\": %.6f",
           G.nsubs, m, deliveries, missing, (t1 - t0) / 1e9, cpu1 - cpu0, cpu_now());
    return json_end();
}

/* latency: the publisher sends one timestamped POST at a time, on schedule */
static char *g_lat_path;
static char g_lat_req[4096 + 512];
static uint64_t g_lat_total;
static double g_lat_rate;
static int64_t g_lat_t0;
static double g_lat_cpu0;

static void latency_tick(int64_t now)
{
    conn_t *c = &G.one;
    G.tick_at = 0;
    if (g_pub_sent >= g_lat_total || G.pub_outstanding)
        return; /* the response (or the end) wakes the loop */
    if (c->phase == P_NEW || c->phase == P_CLOSED) {
        c->req = NULL;
        conn_open(c, &G.pub_addr, G.pub_addr_len, 0);
        return;
    }
    if (c->phase != P_IDLE)
        return;
    if (!g_lat_t0) {
        g_lat_t0 = now;
        g_lat_cpu0 = cpu_now();
    }
    int64_t due = g_lat_t0 + (int64_t)((double)g_pub_sent * 1e9 / g_lat_rate);
    if (now < due) {
        G.tick_at = due;
        return;
    }
    int64_t ts = now_ns();
    char body[32];
    int body_len = snprintf(body, sizeof body, "%" PRId64, ts);
    int len = snprintf(g_lat_req, sizeof g_lat_req,
                       "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\n"
                       "Content-Length: %d\r\n\r\n%s", g_lat_path, G.pub_host_header,
                       body_len, body);
    g_pub_sent++;
    G.pub_outstanding = 1;
    conn_request(c, g_lat_req, (uint32_t)len);
}

static int until_lat_published(void) { return G.pub_ok == g_lat_total; }

static uint64_t g_lat_expected;
static int until_lat_received(void) { return g_received >= g_lat_expected; }

/* Wirth's selection: afterwards a[0..k-1] <= a[k] <= a[k+1..n-1]. */
static uint32_t select_kth(uint32_t *a, uint64_t n, uint64_t k)
{
    int64_t l = 0, r = (int64_t)n - 1, kk = (int64_t)k;
    while (l < r) {
        int64_t mid = l + (r - l) / 2;
        uint32_t x = a[l], y = a[mid], z = a[r]; /* median of three as the pivot */
        uint32_t pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        int64_t i = l, j = r;
        do {
            while (a[i] < pivot)
                i++;
            while (pivot < a[j])
                j--;
            if (i <= j) {
                uint32_t t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        } while (i <= j);
        if (j < kk)
            l = i;
        if (kk < i)
            r = j;
    }
    return a[k];
}

static double percentile_ms(uint64_t n, double p, uint64_t limit)
{
    /* nearest rank; selecting with limit keeps the earlier selections valid */
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)n);
    uint64_t k = rank ? rank - 1 : 0;
    if (k >= n)
        k = n - 1;
    return select_kth(g_samples, limit, k) / 1e4;
}

/* The p50/p90/p99/max JSON members of the samples taken (latency and ticks modes). */
static void print_percentiles(void)
{
    uint64_t n = g_nsamples;
    if (n) {
        double p99 = percentile_ms(n, 99, n);
        uint64_t k99 = (uint64_t)ceil(0.99 * (double)n);
        double p90 = percentile_ms(n, 90, k99 ? k99 : 1);
        uint64_t k90 = (uint64_t)ceil(0.90 * (double)n);
        double p50 = percentile_ms(n, 50, k90 ? k90 : 1);
        uint32_t max = 0;
        for (uint64_t i = 0; i < n; i++)
            if (g_samples[i] > max)
                max = g_samples[i];
        printf("\"p50_ms\": %.4f, \"p90_ms\": %.4f, \"p99_ms\": %.4f, \"max_ms\": %.4f, ",
               p50, p90, p99, max / 1e4);
    } else {
        printf("\"p50_ms\": null, \"p90_ms\": null, \"p99_ms\": null, \"max_ms\": null, ");
    }
}

static int mode_latency(void)
{
    int64_t t1 = 0;
    double cpu1 = 0;
    int slow = 0;
    uint64_t nonslow = 0;
    if (!(O.rate > 0) || !(O.duration > 0)) {
        fail("--rate and --duration must be > 0");
    } else if (!is_int(O.slow) || O.slow >= O.subscribers) {
        fail("--slow must be an integer below --subscribers");
    } else {
        slow = (int)O.slow;
        g_lat_rate = O.rate;
        g_lat_total = (uint64_t)llround(O.rate * O.duration);
        if (g_lat_total < 1)
            g_lat_total = 1;
    }
    if (!g_error[0] && net_setup() == 0 && open_subscribers(slow) == 0) {
        nonslow = (uint64_t)(G.nsubs - slow);
        g_lat_expected = nonslow * g_lat_total;
        g_samples_cap = g_lat_expected;
        if (g_samples_cap > (uint64_t)1 << 28) {
            fail("subscribers x rate x duration = %" PRIu64 " samples is too many",
                 g_samples_cap);
        } else if (!(g_samples = malloc(g_samples_cap * sizeof *g_samples + 1))) {
            fail("out of memory for %" PRIu64 " samples", g_samples_cap);
        } else {
            g_lat_path = (char *)(O.pub_path ? O.pub_path : "/pub");
            if (strlen(g_lat_path) > 4096) {
                fail("--pub-path is too long");
            } else {
                g_pub_what = format_alloc("POST %s", g_lat_path);
                for (int i = 0; i < G.nsubs; i++) {
                    G.subs[i].capture = !G.subs[i].slow;
                    G.subs[i].sse.cap_len = 0;
                    G.subs[i].sse.cap_on = 0;
                }
                G.one.kind = K_PUB;
                G.tick = latency_tick;
                double limit = O.have_timeout ? O.timeout : O.duration * 2 + 30;
                int r = pump(until_lat_published, now_ns() + (int64_t)(limit * 1e9));
                if (r == PUMP_TIMEOUT)
                    fail("publishing %" PRIu64 " events at %g/s did not finish in %.0f s (%"
                         PRIu64 " answered)", g_lat_total, g_lat_rate, limit, G.pub_ok);
                if (r == PUMP_OK) {
                    double drain = O.drain > 0 ? O.drain : 5;
                    pump(until_lat_received, now_ns() + (int64_t)(drain * 1e9));
                }
            }
        }
    }
    t1 = now_ns();
    cpu1 = cpu_now();
    uint64_t missing = g_lat_expected > g_received ? g_lat_expected - g_received : 0;
    if (!g_error[0] && missing)
        fail("%" PRIu64 " of %" PRIu64 " events missing (%" PRIu64 " received, %" PRIu64
             " unparsed)", missing, g_lat_expected, g_received, g_unparsed);
    if (!g_error[0] && g_received > g_lat_expected)
        fail("%" PRIu64 " events received, more than the %" PRIu64 " published",
             g_received, g_lat_expected);
    printf("{\"subscribers\": %d, \"slow\": %d, \"published\": %" PRIu64
           ", \"received\": %" PRIu64 ", ", G.nsubs, slow, G.pub_ok, g_received);
    print_percentiles();
    printf("\"missing\": %" PRIu64 ", \"unparsed\": %" PRIu64 ", \"seconds\": %.6f, "
           "\"cpu_seconds\": %.6f, \"cpu_seconds_total\": %.6f",
           missing, g_unparsed, g_lat_t0 ? (t1 - g_lat_t0) / 1e9 : 0.0,
           g_lat_t0 ? cpu1 - g_lat_cpu0 : 0.0, cpu1);
    return json_end();
}

static int until_never(void) { return 0; }

/* ticks: the server paces every stream; done when every stream has ended */
static int until_all_closed(void) { return G.nsubs > 0 && G.closed == G.nsubs; }

static int mode_ticks(void)
{
    int64_t t0 = now_ns();
    double cpu0 = cpu_now();
    uint64_t expected = 0;
    if (!is_int(O.events) || O.events < 1 || !is_int(O.subscribers) || O.subscribers < 1) {
        fail("--events and --subscribers must be integers >= 1");
    } else if (!O.sub_path) {
        fail("--sub-path is required (the server-paced stream)");
    } else {
        g_ticks_per = (uint64_t)O.events;
        expected = (uint64_t)O.subscribers * g_ticks_per;
        g_samples_cap = expected;
        if (g_samples_cap > (uint64_t)1 << 28)
            fail("subscribers x events = %" PRIu64 " samples is too many", g_samples_cap);
        else if (!(g_samples = malloc(g_samples_cap * sizeof *g_samples + 1)))
            fail("out of memory for %" PRIu64 " samples", g_samples_cap);
    }
    if (!g_error[0] && net_setup() == 0 && open_subscribers(0) == 0) {
        double limit = O.have_timeout ? O.timeout : 120;
        int r = pump(until_all_closed, now_ns() + (int64_t)(limit * 1e9));
        if (r == PUMP_TIMEOUT)
            fail("timed out after %.0f s: %d of %d streams ended, %" PRIu64 " of %" PRIu64
                 " events received", limit, G.closed, G.nsubs, g_received, expected);
    }
    int64_t t1 = now_ns();
    double cpu1 = cpu_now();
    uint64_t missing = expected > g_received ? expected - g_received : 0;
    if (!g_error[0] && missing)
        fail("%" PRIu64 " of %" PRIu64 " events missing (%" PRIu64 " unparsed)", missing,
             expected, g_unparsed);
    printf("{\"subscribers\": %d, \"events_per_stream\": %" PRIu64 ", \"received\": %" PRIu64
           ", ", G.nsubs, g_ticks_per, g_received);
    print_percentiles();
    printf("\"missing\": %" PRIu64 ", \"unparsed\": %" PRIu64 ", \"seconds\": %.6f, "
           "\"cpu_seconds\": %.6f", missing, g_unparsed, (t1 - t0) / 1e9, cpu1 - cpu0);
    return json_end();
}

/* streams: S concurrent streams of N events each, as fast as the server sends them */
static int mode_streams(void)
{
    int64_t t0 = now_ns();
    double cpu0 = cpu_now();
    uint64_t expected = 0, total = 0;
    if (!is_int(O.events) || O.events < 1 || !is_int(O.subscribers) || O.subscribers < 1) {
        fail("--events and --subscribers must be integers >= 1");
    } else if (!O.sub_path) {
        fail("--sub-path is required (a stream of --events events that ends)");
    } else {
        g_ticks_per = (uint64_t)O.events;
        expected = (uint64_t)O.subscribers * g_ticks_per;
    }
    if (!g_error[0] && net_setup() == 0 && open_subscribers(0) == 0) {
        double limit = O.have_timeout ? O.timeout : 120;
        int r = pump(until_all_closed, now_ns() + (int64_t)(limit * 1e9));
        if (r == PUMP_TIMEOUT)
            fail("timed out after %.0f s: %d of %d streams ended", limit, G.closed, G.nsubs);
    }
    int64_t t1 = now_ns();
    double cpu1 = cpu_now();
    for (int i = 0; i < G.nsubs; i++)
        total += G.subs[i].sse.events;
    if (!g_error[0] && total != expected)
        fail("%" PRIu64 " events received, %" PRIu64 " expected", total, expected);
    printf("{\"subscribers\": %d, \"events_per_stream\": %" PRIu64 ", \"events\": %" PRIu64
           ", \"seconds\": %.6f, \"cpu_seconds\": %.6f", G.nsubs, g_ticks_per, total,
           (t1 - t0) / 1e9, cpu1 - cpu0);
    return json_end();
}

static int mode_hold(void)
{
    int64_t start = now_ns();
    double cpu_start = cpu_now();
    double register_seconds = 0, deliver_seconds = 0;
    int delivered = 0, published = 0;
    if (net_setup() == 0 && open_subscribers(0) == 0) {
        register_seconds = (now_ns() - start) / 1e9;
        fprintf(stderr, "registered %d\n", G.nsubs);
        fflush(stderr);
        if (O.seconds > 0) {
            int r = pump(until_never, now_ns() + (int64_t)(O.seconds * 1e9));
            if (r == PUMP_TIMEOUT && G.registered - G.closed < G.nsubs)
                fail("%d subscribers were disconnected while held", G.closed);
        }
        if (!g_error[0] && O.then_publish_path) {
            uint64_t n = O.then_events >= 1 ? (uint64_t)O.then_events : 1;
            published = 1;
            publisher_init(O.then_publish_path, NULL, 1);
            start_counting(n);
            double timeout = O.have_timeout ? O.timeout : 60;
            int r = pump(until_all_done, now_ns() + (int64_t)(timeout * 1e9));
            if (r == PUMP_OK) {
                deliver_seconds = (G.t_done - g_pub_t0) / 1e9;
                r = pump(until_published, now_ns() + 30 * 1000000000LL);
                if (r == PUMP_TIMEOUT)
                    fail("no response to %s within 30 s", g_pub_what);
            } else if (r == PUMP_TIMEOUT) {
                deliver_seconds = g_pub_t0 ? (now_ns() - g_pub_t0) / 1e9 : 0;
                fail("timed out after %.1f s: %d of %d subscribers got the publish", timeout,
                     G.done, G.nsubs);
            }
            delivered = G.done;
        }
    }
    printf("{\"subscribers\": %d, \"registered\": %d, \"delivered\": %d, \"published\": %s, "
           "\"seconds\": %.6f, \"cpu_seconds\": %.6f, \"register_seconds\": %.6f, "
           "\"deliver_seconds\": %.6f",
           G.nsubs, G.registered, delivered, published ? "true" : "false",
           (now_ns() - start) / 1e9, cpu_now() - cpu_start, register_seconds, deliver_seconds);
    return json_end();
}

static int mode_count(void)
{
    http_t h;
    sse_t s;
    http_init(&h);
    sse_init(&s);
    size_t k = O.read_size >= 1 ? (size_t)O.read_size : READ_BUF;
    if (k > READ_BUF)
        k = READ_BUF;
    uint64_t rng = O.have_seed ? (uint64_t)O.seed * 0x9E3779B97F4A7C15ULL + 1 : 0;
    uint64_t bytes = 0;
    int ended = 0;
    for (;;) {
        size_t want = k;
        if (O.have_seed) { /* xorshift64: a read size in 1..k */
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            want = 1 + (size_t)(rng % k);
        }
        ssize_t n = read(0, g_buf, want);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail("read: %s", strerror(errno));
            break;
        }
        if (n == 0)
            break;
        bytes += (uint64_t)n;
        if (ended) /* bytes after the end of the response are ignored */
            continue;
        long used = http_feed(&h, &s, 0, g_buf, (size_t)n);
        if (used < 0) {
            fail("%s", h_err);
            break;
        }
        if (h.state == H_DONE)
            ended = 1;
    }
    int complete = !g_error[0] && h.head_done && http_complete_at_eof(&h);
    printf("{\"events\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"body_bytes\": %" PRIu64
           ", \"complete\": %s", s.events, bytes, h.body_bytes, complete ? "true" : "false");
    return json_end();
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    static const struct { const char *name; int mode; int (*run)(void); } MODES[] = {
        {"stream", M_STREAM, mode_stream}, {"fanout", M_FANOUT, mode_fanout},
        {"latency", M_LATENCY, mode_latency}, {"hold", M_HOLD, mode_hold},
        {"count", M_COUNT, mode_count}, {"ticks", M_TICKS, mode_ticks},
        {"streams", M_STREAMS, mode_streams},
    };
    for (size_t i = 0; i < sizeof MODES / sizeof MODES[0]; i++) {
        if (strcmp(argv[1], MODES[i].name) != 0)
            continue;
        int r = parse_options(MODES[i].mode, argc, argv);
        if (r)
            return r;
        G.mode = MODES[i].mode;
        return MODES[i].run();
    }
    return usage_error("unknown mode \"%s\" (stream, fanout, latency, hold, count, ticks, "
                       "streams)", argv[1]);
}
