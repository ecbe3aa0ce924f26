/*
 * The bench's load client: one process, one epoll loop, non-blocking sockets, so that 1,000+
 * live viewers at 8 Mbit/s each fit in a fraction of one core and the client is not what
 * limits a figure. It is compiled at bench time (gcc -O2) by bench/client.ts.
 *
 * It is driven by commands on stdin, one per line, and answers with one JSON line per
 * command on stdout (the orchestrator samples /proc for the server at the same moments):
 *
 *   open <group> <port> <path> <n> <batch> <interval_ms> <timeout_ms>
 *        opens n GETs to 127.0.0.1:<port><path>, <batch> connects every <interval_ms>;
 *        answers {"ev":"opened",...} once every one of them has its first body byte, has
 *        failed, or <timeout_ms> has passed since its connect.
 *   mark    snapshots every connection's body byte counter, the clock and getrusage;
 *           answers {"ev":"mark",...}. Two marks make a measurement window.
 *   report  {"ev":"report",...}: per group the time to first byte of every connection, the
 *           first body byte checks (0x47, PAT), statuses, failures, and the body bytes each
 *           connection received between the last two marks; plus the client's own CPU
 *           between those marks (so a saturated client is reported, not mistaken for a
 *           slow server).
 *   close <group>   closes that group's sockets (RST: no TIME_WAIT pile-up over many steps).
 *   quit
 *
 * HTTP: the response head is parsed (status, Transfer-Encoding). The proxy and node:http
 * answer with chunked encoding, so the chunk framing is decoded to find the first body byte
 * and to count body bytes exactly; an identity body is counted as is.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define RECV_BUF (256 * 1024)
#define HEAD_MAX 8192
#define MAX_GROUPS 1024
#define STDIN_TAG ((uint64_t)-1)

enum cstate { C_PENDING, C_CONNECTING, C_HEAD, C_BODY, C_DONE };
enum chstate { CH_SIZE, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_END };

typedef struct {
  int fd;
  int group;
  enum cstate st;
  int status;        /* HTTP status, 0 before the head */
  int chunked;
  enum chstate ch;   /* chunked decoder state */
  uint64_t ch_left;  /* bytes left in the current chunk */
  int ch_digits;
  double t_start;    /* connect() called (s, monotonic) */
  double t_first;    /* first body byte (0 = none yet) */
  double t_due;      /* when this connection should be opened */
  uint8_t first[4];  /* first body bytes, for the sync-byte / PAT check */
  int nfirst;
  int failed;        /* 1 connect, 2 bad status, 3 closed before first byte, 4 timeout */
  int ended;         /* closed after its first byte */
  uint64_t raw;      /* socket bytes */
  uint64_t body;     /* decoded body bytes */
  uint64_t mark_prev, mark_cur;
  int marks;         /* marks taken while this connection was open and had data */
  char *head;        /* response head while it is being read */
  int head_len;
  uint64_t timeout_ms;
} conn_t;

typedef struct {
  char name[64];
  int port;
  char path[1024];
  int n, batch, interval_ms;
  uint64_t timeout_ms;
  int first_conn, count; /* indexes in conns[] */
  int opened_reported;
  int closed;
} group_t;

static conn_t *conns;
static int nconns, capconns;
static group_t groups[MAX_GROUPS];
static int ngroups;
static int epfd;
static uint8_t rbuf[RECV_BUF];
static double mark_t_prev, mark_t_cur;
static double ru_prev_user, ru_prev_sys, ru_cur_user, ru_cur_sys;
static int nmarks;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void rusage_now(double *user, double *sys) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  *user = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
  *sys = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void conn_finish(conn_t *c, int failed) {
  if (c->st == C_DONE) return;
  if (c->fd >= 0) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    /* RST instead of FIN: thousands of sockets per step would otherwise sit in TIME_WAIT. */
    struct linger lg = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(c->fd);
    c->fd = -1;
  }
  if (c->t_first == 0 && !c->failed) c->failed = failed ? failed : 3;
  else if (c->t_first > 0) c->ended = 1;
  free(c->head);
  c->head = NULL;
  c->st = C_DONE;
}

static void conn_start(conn_t *c, int idx) {
  group_t *g = &groups[c->group];
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  c->t_start = now_s();
  if (fd < 0) {
    c->failed = 1;
    c->st = C_DONE;
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)g->port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  c->fd = fd;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
    conn_finish(c, 1);
    return;
  }
  c->st = C_CONNECTING;
  struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)idx};
  epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void send_request(conn_t *c, int idx) {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err) {
    conn_finish(c, 1);
    return;
  }
  group_t *g = &groups[c->group];
  char req[1400];
  /* A distinct User-Agent per viewer, like distinct players (the proxy derives ids from it). */
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: m3u-proxy-bench/%d\r\n"
                   "Accept: */*\r\nConnection: keep-alive\r\n\r\n",
                   g->path, g->port, idx);
  /* A few hundred bytes always fit in a fresh socket's send buffer. */
  if (send(c->fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
    conn_finish(c, 1);
    return;
  }
  c->st = C_HEAD;
  c->head = malloc(HEAD_MAX);
  c->head_len = 0;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)idx};
  epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Body bytes (already de-chunked): counters, first-byte time and the first 4 bytes. */
static void on_body(conn_t *c, const uint8_t *p, size_t n) {
  if (n == 0) return;
  if (c->t_first == 0) c->t_first = now_s();
  while (c->nfirst < 4 && n > 0 && c->body < 4) {
    c->first[c->nfirst++] = p[0];
    p++;
    n--;
    c->body++;
  }
  c->body += n;
}

/* Decodes chunked framing; returns 0 when the body ended (last chunk). */
static int dechunk(conn_t *c, const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    switch (c->ch) {
    case CH_SIZE: {
      int ch = p[i];
      if (isxdigit(ch)) {
        int v = ch <= '9' ? ch - '0' : (tolower(ch) - 'a' + 10);
        c->ch_left = c->ch_left * 16 + (uint64_t)v;
        c->ch_digits++;
        i++;
      } else if (ch == '\r') {
        c->ch = CH_SIZE_LF;
        i++;
      } else if (ch == ';' || ch == ' ' || ch == '\t') {
        c->ch = CH_EXT;
        i++;
      } else {
        return -1; /* framing error */
      }
      break;
    }
    case CH_EXT:
      if (p[i] == '\r') c->ch = CH_SIZE_LF;
      i++;
      break;
    case CH_SIZE_LF:
      if (p[i] != '\n') return -1;
      i++;
      if (c->ch_left == 0) {
        c->ch = CH_END;
        return 0;
      }
      c->ch = CH_DATA;
      break;
    case CH_DATA: {
      size_t take = n - i < c->ch_left ? n - i : (size_t)c->ch_left;
      on_body(c, p + i, take);
      i += take;
      c->ch_left -= take;
      if (c->ch_left == 0) c->ch = CH_DATA_CR;
      break;
    }
    case CH_DATA_CR:
      if (p[i] != '\r') return -1;
      c->ch = CH_DATA_LF;
      i++;
      break;
    case CH_DATA_LF:
      if (p[i] != '\n') return -1;
      c->ch = CH_SIZE;
      c->ch_left = 0;
      c->ch_digits = 0;
      i++;
      break;
    case CH_END:
      return 0;
    }
  }
  return 1;
}

static void on_data(conn_t *c, const uint8_t *p, size_t n) {
  if (c->st == C_HEAD) {
    size_t room = HEAD_MAX - (size_t)c->head_len;
    size_t take = n < room ? n : room;
    memcpy(c->head + c->head_len, p, take);
    int old = c->head_len;
    c->head_len += (int)take;
    char *end = memmem(c->head, (size_t)c->head_len, "\r\n\r\n", 4);
    if (!end) {
      if (c->head_len >= HEAD_MAX) conn_finish(c, 2);
      return;
    }
    size_t head_bytes = (size_t)(end + 4 - c->head);
    c->head[head_bytes - 2] = 0;
    if (sscanf(c->head, "HTTP/1.%*d %d", &c->status) != 1) c->status = -1;
    /* Transfer-Encoding: chunked, case-insensitive, anywhere in the head. */
    for (char *l = strstr(c->head, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
      if (strncasecmp(l + 2, "transfer-encoding:", 18) == 0 && strcasestr(l + 2, "chunked")) c->chunked = 1;
    }
    if (c->status != 200) {
      conn_finish(c, 2);
      return;
    }
    c->st = C_BODY;
    free(c->head);
    c->head = NULL;
    /* What followed the head in this read is body (framed, if chunked). */
    size_t used = head_bytes - (size_t)old;
    p += used;
    n -= used;
  }
  if (c->st != C_BODY || n == 0) return;
  if (c->chunked) {
    if (dechunk(c, p, n) <= 0) conn_finish(c, 0);
  } else {
    on_body(c, p, n);
  }
}

static void on_readable(conn_t *c) {
  ssize_t r = recv(c->fd, rbuf, RECV_BUF, 0);
  if (r > 0) {
    c->raw += (uint64_t)r;
    on_data(c, rbuf, (size_t)r);
  } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
    conn_finish(c, 0);
  }
}

static int find_group(const char *name) {
  for (int i = 0; i < ngroups; i++)
    if (strcmp(groups[i].name, name) == 0) return i;
  return -1;
}

/* An "opened" answer once every connection of the group has its first byte, failed, or timed out. */
static void check_opened(double t) {
  for (int gi = 0; gi < ngroups; gi++) {
    group_t *g = &groups[gi];
    if (g->opened_reported || g->closed) continue;
    int ok = 0, failed = 0, waiting = 0;
    for (int i = g->first_conn; i < g->first_conn + g->count; i++) {
      conn_t *c = &conns[i];
      if (c->st == C_PENDING) {
        waiting++;
        continue;
      }
      if (c->t_first > 0) ok++;
      else if (c->failed || c->st == C_DONE) failed++;
      else if ((t - c->t_start) * 1000 > (double)g->timeout_ms) {
        c->failed = 4;
        conn_finish(c, 4);
        failed++;
      } else
        waiting++;
    }
    if (waiting == 0) {
      g->opened_reported = 1;
      printf("{\"ev\":\"opened\",\"group\":\"%s\",\"ok\":%d,\"failed\":%d}\n", g->name, ok, failed);
      fflush(stdout);
    }
  }
}

static void cmd_open(char *args) {
  if (ngroups >= MAX_GROUPS) {
    printf("{\"ev\":\"error\",\"message\":\"too many groups\"}\n");
    fflush(stdout);
    return;
  }
  group_t *g = &groups[ngroups];
  memset(g, 0, sizeof *g);
  unsigned long long to = 0;
  if (sscanf(args, "%63s %d %1023s %d %d %d %llu", g->name, &g->port, g->path, &g->n, &g->batch, &g->interval_ms, &to) != 7 ||
      g->n <= 0 || g->batch <= 0) {
    printf("{\"ev\":\"error\",\"message\":\"bad open\"}\n");
    fflush(stdout);
    return;
  }
  g->timeout_ms = to;
  if (nconns + g->n > capconns) {
    capconns = (nconns + g->n) * 2;
    conns = realloc(conns, sizeof(conn_t) * (size_t)capconns);
  }
  g->first_conn = nconns;
  g->count = g->n;
  double t = now_s();
  for (int i = 0; i < g->n; i++) {
    conn_t *c = &conns[nconns++];
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->group = ngroups;
    c->st = C_PENDING;
    c->t_due = t + (double)(i / g->batch) * g->interval_ms / 1000.0;
  }
  ngroups++;
}

static void cmd_mark(void) {
  mark_t_prev = mark_t_cur;
  ru_prev_user = ru_cur_user;
  ru_prev_sys = ru_cur_sys;
  mark_t_cur = now_s();
  rusage_now(&ru_cur_user, &ru_cur_sys);
  for (int i = 0; i < nconns; i++) {
    conn_t *c = &conns[i];
    c->mark_prev = c->mark_cur;
    c->mark_cur = c->body;
    if (c->marks < 2) c->marks++;
    /* A connection opened after the first mark has no full window. */
    if (c->st == C_PENDING) c->marks = 0;
  }
  nmarks++;
  printf("{\"ev\":\"mark\",\"t\":%.6f,\"user\":%.3f,\"sys\":%.3f}\n", mark_t_cur, ru_cur_user, ru_cur_sys);
  fflush(stdout);
}

static void cmd_report(void) {
  /* Built in a growing buffer: one JSON line, however many connections. */
  size_t cap = 1 << 16, len = 0;
  char *out = malloc(cap);
#define EMIT(...)                                                     \
  do {                                                                \
    for (;;) {                                                        \
      int w = snprintf(out + len, cap - len, __VA_ARGS__);            \
      if (w >= 0 && (size_t)w < cap - len) {                          \
        len += (size_t)w;                                             \
        break;                                                        \
      }                                                               \
      cap *= 2;                                                       \
      out = realloc(out, cap);                                        \
    }                                                                 \
  } while (0)
  double win = nmarks >= 2 ? mark_t_cur - mark_t_prev : 0;
  EMIT("{\"ev\":\"report\",\"window_s\":%.6f,\"client_cpu_s\":%.3f,\"groups\":{", win,
       nmarks >= 2 ? (ru_cur_user - ru_prev_user) + (ru_cur_sys - ru_prev_sys) : 0.0);
  for (int gi = 0; gi < ngroups; gi++) {
    group_t *g = &groups[gi];
    EMIT("%s\"%s\":{\"n\":%d,", gi ? "," : "", g->name, g->count);
    int ok = 0, ended = 0, f47 = 0, fpat = 0, fails[5] = {0};
    for (int i = g->first_conn; i < g->first_conn + g->count; i++) {
      conn_t *c = &conns[i];
      if (c->t_first > 0) ok++;
      if (c->ended) ended++;
      if (c->failed > 0 && c->failed < 5) fails[c->failed]++;
      if (c->nfirst >= 1 && c->first[0] == 0x47) f47++;
      /* A PAT: sync byte, payload_unit_start set, PID 0. */
      if (c->nfirst >= 3 && c->first[0] == 0x47 && (c->first[1] & 0x40) && (((c->first[1] & 0x1f) << 8) | c->first[2]) == 0) fpat++;
    }
    EMIT("\"ok\":%d,\"ended\":%d,\"first_0x47\":%d,\"first_pat\":%d,"
         "\"failed\":{\"connect\":%d,\"status\":%d,\"closed\":%d,\"timeout\":%d},\"ttfb_ms\":[",
         ok, ended, f47, fpat, fails[1], fails[2], fails[3], fails[4]);
    int first = 1;
    for (int i = g->first_conn; i < g->first_conn + g->count; i++) {
      conn_t *c = &conns[i];
      if (c->t_first > 0) {
        EMIT("%s%.3f", first ? "" : ",", (c->t_first - c->t_start) * 1000);
        first = 0;
      }
    }
    EMIT("],\"statuses\":[");
    for (int i = g->first_conn; i < g->first_conn + g->count; i++) EMIT("%s%d", i > g->first_conn ? "," : "", conns[i].status);
    /* Body bytes between the last two marks; -1 for a connection not open for the whole window. */
    EMIT("],\"window_bytes\":[");
    for (int i = g->first_conn; i < g->first_conn + g->count; i++) {
      conn_t *c = &conns[i];
      long long d = (nmarks >= 2 && c->marks >= 2) ? (long long)(c->mark_cur - c->mark_prev) : -1;
      EMIT("%s%lld", i > g->first_conn ? "," : "", d);
    }
    uint64_t raw = 0, body = 0;
    for (int i = g->first_conn; i < g->first_conn + g->count; i++) {
      raw += conns[i].raw;
      body += conns[i].body;
    }
    EMIT("],\"raw_bytes\":%llu,\"body_bytes\":%llu}", (unsigned long long)raw, (unsigned long long)body);
  }
  EMIT("}}\n");
  fwrite(out, 1, len, stdout);
  fflush(stdout);
  free(out);
}

static void cmd_close(const char *name) {
  int gi = find_group(name);
  if (gi < 0) return;
  group_t *g = &groups[gi];
  for (int i = g->first_conn; i < g->first_conn + g->count; i++) {
    conn_t *c = &conns[i];
    if (c->st == C_PENDING) c->st = C_DONE;
    conn_finish(c, 0);
  }
  g->closed = 1;
  printf("{\"ev\":\"closed\",\"group\":\"%s\"}\n", name);
  fflush(stdout);
}

static char inbuf[65536];
static size_t inlen;

/* Returns 0 on quit or EOF. */
static int on_stdin(void) {
  ssize_t r = read(0, inbuf + inlen, sizeof inbuf - 1 - inlen);
  if (r <= 0) return 0;
  inlen += (size_t)r;
  char *nl;
  while ((nl = memchr(inbuf, '\n', inlen))) {
    *nl = 0;
    char *line = inbuf;
    if (strncmp(line, "open ", 5) == 0) cmd_open(line + 5);
    else if (strcmp(line, "mark") == 0) cmd_mark();
    else if (strcmp(line, "report") == 0) cmd_report();
    else if (strncmp(line, "close ", 6) == 0) cmd_close(line + 6);
    else if (strcmp(line, "quit") == 0) return 0;
    size_t used = (size_t)(nl + 1 - inbuf);
    memmove(inbuf, nl + 1, inlen - used);
    inlen -= used;
  }
  return 1;
}

int main(void) {
  epfd = epoll_create1(EPOLL_CLOEXEC);
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  struct epoll_event sev = {.events = EPOLLIN, .data.u64 = STDIN_TAG};
  epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &sev);
  struct epoll_event evs[1024];
  printf("{\"ev\":\"ready\"}\n");
  fflush(stdout);
  int running = 1;
  while (running) {
    /* Short timeout: scheduled connects (batches) and first-byte timeouts are checked here. */
    int n = epoll_wait(epfd, evs, 1024, 5);
    for (int i = 0; i < n; i++) {
      if (evs[i].data.u64 == STDIN_TAG) {
        if (!on_stdin()) running = 0;
        continue;
      }
      int idx = (int)evs[i].data.u64;
      conn_t *c = &conns[idx];
      if (c->st == C_CONNECTING) {
        if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) send_request(c, idx);
      } else if (c->st == C_HEAD || c->st == C_BODY) {
        on_readable(c);
      }
    }
    double t = now_s();
    for (int gi = 0; gi < ngroups; gi++) {
      group_t *g = &groups[gi];
      if (g->closed) continue;
      for (int k = g->first_conn; k < g->first_conn + g->count; k++) {
        conn_t *c = &conns[k];
        if (c->st == C_PENDING && c->t_due <= t) conn_start(c, k);
      }
    }
    check_opened(t);
  }
  for (int i = 0; i < nconns; i++) conn_finish(&conns[i], 0);
  return 0;
}
