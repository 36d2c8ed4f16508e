/*  =========================================================================
    shoal_beacon - UDP discovery of the nodes of a mesh

    A node announces itself with a small binary beacon sent at a fixed
    interval, and learns about the other nodes of its mesh from theirs.
    This file holds the beacon codec and the two transports that carry it.

    The payload (network byte order, DESIGN.md is the contract):

        offset  size  field
        0       4     'S' 'H' 'L' 0x01: protocol and version
        4       8     mesh id: FNV-1a 64-bit hash of the mesh name
        12      16    node id
        28      2     PUB port
        30      2     ROUTER port
        32      1     flags: bit 0 = leaving, other bits sent as 0
        33      32    CURVE public key, only when security is on

    Invariants:
    1. A payload is exactly 33 bytes (no key) or 65 bytes (key); any other
       size is not a shoal beacon of version 1.
    2. The first 12 bytes (protocol, version, mesh id) are the receive
       filter: a payload that does not start with our 12 bytes is dropped
       and counted, never parsed further and never returned.
    3. Flag bits other than "leaving" are ignored on receive, so a later
       version can add flags without breaking older nodes.
    4. Nothing is ever sent anywhere but the chosen interface: the
       loopback transport only sends to 127.255.255.255, which the kernel
       never routes off the host, and the zbeacon transport only runs on
       an interface named by the caller (never zbeacon's "first interface"
       default, never its "*" = all interfaces).

    Transports:

    - zbeacon (a LAN interface): czmq's beacon actor broadcasts on the
      interface's broadcast address from its own thread and passes
      received beacons that match our 12-byte filter to its pipe as two
      frames (sender's address, payload). zbeacon takes its interface from
      a process-wide czmq setting (zsys_set_interface), read when it is
      configured and again whenever it reopens its socket after a send
      failure; so the setting is made under a lock and left in place, and
      one process uses one LAN interface. zbeacon drops copies of its own
      payload, and beacons of other meshes never reach us, so they are not
      in the dropped count.

    - loopback ("lo"): loopback cannot broadcast for zbeacon, so each node
      opens a UDP socket bound to 127.255.255.255:port with SO_REUSEADDR,
      SO_REUSEPORT and SO_BROADCAST, and sends to the same address. Linux
      delivers a datagram sent to a broadcast address to every socket
      bound to that address and port (SO_REUSEPORT load balancing applies
      to unicast only), in this process and in others of the same user,
      so every node on the host sees every beacon, its own included. The
      bind to a broadcast address also means the socket never receives
      unicast traffic or anything that arrived on a real interface. The
      kernel never sends a 127/8 destination out of a non-loopback device.
      A down lo is refused when the beacon is opened (the bind alone does
      not catch it). There is no thread: the caller's poll loop calls
      shoal_beacon_tick.
    ========================================================================= */

#include "shoal_beacon.h"

#include <czmq.h>

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define S_FILTER_SIZE 12 //  protocol, version and mesh id
#define S_LOOPBACK_BROADCAST "127.255.255.255"
#define S_RECV_BUDGET 64   //  datagrams examined per shoal_beacon_recv call
#define S_DATAGRAM_MAX 512 //  receive buffer; larger payloads are dropped anyway

static const uint8_t s_prefix[4] = {'S', 'H', 'L', 0x01};

struct _shoal_beacon_t {
    zactor_t *actor;                           //  zbeacon actor, NULL for loopback
    int fd;                                    //  loopback UDP socket, -1 for zbeacon
    struct sockaddr_in broadcast;              //  loopback destination 127.255.255.255:port
    uint8_t filter[S_FILTER_SIZE];             //  first bytes of every beacon we accept
    uint8_t payload[SHOAL_BEACON_SIZE_SECURE]; //  loopback: encoded beacon we send
    size_t payload_size;                       //  bytes in payload, 0 when silent
    int interval_ms;                           //  loopback: ms between sends
    int64_t send_at;                           //  loopback: monotonic ms of the next send
    uint64_t dropped;                          //  payloads received and refused
};

//  Last failure of shoal_beacon_new in this thread, for shoal_beacon_error.
static _Thread_local char s_error[256];

//  Serializes zsys_set_interface and zbeacon's CONFIGURE, which reads it.
static pthread_mutex_t s_zsys_lock = PTHREAD_MUTEX_INITIALIZER;

static void
s_set_error (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (s_error, sizeof s_error, format, args);
    va_end (args);
}

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
s_put_u16 (uint8_t *out, uint16_t value)
{
    out[0] = (uint8_t) (value >> 8);
    out[1] = (uint8_t) value;
}

static uint16_t
s_get_u16 (const uint8_t *data)
{
    return (uint16_t) ((data[0] << 8) | data[1]);
}

static void
s_put_u64 (uint8_t *out, uint64_t value)
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t) (value >> (56 - 8 * i));
}

static uint64_t
s_get_u64 (const uint8_t *data)
{
    uint64_t value = 0;
    for (int i = 0; i < 8; i++)
        value = (value << 8) | data[i];
    return value;
}

//  --------------------------------------------------------------------------
//  Codec

uint64_t
shoal_mesh_id (const char *mesh)
{
    assert (mesh);
    uint64_t hash = 0xcbf29ce484222325ULL; //  FNV-1a 64 offset basis
    for (const unsigned char *p = (const unsigned char *) mesh; *p; p++) {
        hash ^= *p;
        hash *= 0x100000001b3ULL; //  FNV 64 prime
    }
    return hash;
}

size_t
shoal_beacon_encode (const shoal_beacon_msg_t *msg, uint8_t *out)
{
    assert (msg);
    assert (out);
    memcpy (out, s_prefix, sizeof s_prefix);
    s_put_u64 (out + 4, msg->mesh_id);
    memcpy (out + 12, msg->node, 16);
    s_put_u16 (out + 28, msg->pub_port);
    s_put_u16 (out + 30, msg->router_port);
    out[32] = msg->leaving ? SHOAL_BEACON_FLAG_LEAVING : 0;
    if (!msg->has_key)
        return SHOAL_BEACON_SIZE;
    memcpy (out + 33, msg->key, 32);
    return SHOAL_BEACON_SIZE_SECURE;
}

int
shoal_beacon_decode (const uint8_t *data, size_t size, shoal_beacon_msg_t *msg)
{
    assert (msg);
    if (!data || (size != SHOAL_BEACON_SIZE && size != SHOAL_BEACON_SIZE_SECURE))
        return -1;
    if (memcmp (data, s_prefix, sizeof s_prefix) != 0)
        return -1;
    memset (msg, 0, sizeof *msg);
    msg->mesh_id = s_get_u64 (data + 4);
    memcpy (msg->node, data + 12, 16);
    msg->pub_port = s_get_u16 (data + 28);
    msg->router_port = s_get_u16 (data + 30);
    msg->leaving = (data[32] & SHOAL_BEACON_FLAG_LEAVING) != 0;
    msg->has_key = size == SHOAL_BEACON_SIZE_SECURE;
    if (msg->has_key)
        memcpy (msg->key, data + 33, 32);
    return 0;
}

//  Accepts a received payload: our filter, then a full decode. Counts a
//  refusal in dropped.
static bool
s_accept (shoal_beacon_t *self, const uint8_t *data, size_t size, shoal_beacon_msg_t *msg)
{
    if (size < S_FILTER_SIZE || memcmp (data, self->filter, S_FILTER_SIZE) != 0
        || shoal_beacon_decode (data, size, msg) != 0) {
        self->dropped++;
        return false;
    }
    return true;
}

static void
s_copy_ip (char *ip, size_t ip_size, const char *source)
{
    if (ip && ip_size > 0)
        snprintf (ip, ip_size, "%s", source);
}

//  --------------------------------------------------------------------------
//  Opening the transports

static int
s_open_loopback (shoal_beacon_t *self, int port)
{
    self->broadcast.sin_family = AF_INET;
    self->broadcast.sin_port = htons ((uint16_t) port);
    inet_pton (AF_INET, S_LOOPBACK_BROADCAST, &self->broadcast.sin_addr);

    self->fd = socket (AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
    if (self->fd == -1) {
        s_set_error ("loopback beacon: socket: %s", strerror (errno));
        return -1;
    }
    int on = 1;
    if (setsockopt (self->fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on)
        || setsockopt (self->fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on)
        || setsockopt (self->fd, SOL_SOCKET, SO_BROADCAST, &on, sizeof on)) {
        s_set_error ("loopback beacon: setsockopt: %s", strerror (errno));
        return -1;
    }
    //  Recent kernels let the bind succeed on a down lo, where every send
    //  then fails with ENETUNREACH; refuse that here, with the reason.
    struct ifreq request;
    memset (&request, 0, sizeof request);
    snprintf (request.ifr_name, sizeof request.ifr_name, "lo");
    if (ioctl (self->fd, SIOCGIFFLAGS, &request) == 0 && !(request.ifr_flags & IFF_UP)) {
        s_set_error ("loopback beacon: lo is down");
        return -1;
    }
    if (bind (self->fd, (struct sockaddr *) &self->broadcast, sizeof self->broadcast)) {
        s_set_error ("loopback beacon: cannot bind %s:%d: %s", S_LOOPBACK_BROADCAST, port,
                     strerror (errno));
        return -1;
    }
    return 0;
}

//  True when czmq's interface list (up, broadcast, IPv4, not loopback or
//  point-to-point) holds interface, which is what zbeacon can use.
static bool
s_can_broadcast (const char *interface)
{
    bool found = false;
    ziflist_t *iflist = ziflist_new ();
    if (!iflist)
        return false;
    for (const char *name = ziflist_first (iflist); name && !found; name = ziflist_next (iflist))
        found = streq (name, interface);
    ziflist_destroy (&iflist);
    return found;
}

static int
s_open_zbeacon (shoal_beacon_t *self, const char *interface, int port)
{
    if (strlen (interface) >= IF_NAMESIZE || if_nametoindex (interface) == 0) {
        s_set_error ("no such interface: %s", interface);
        return -1;
    }
    if (!s_can_broadcast (interface)) {
        s_set_error ("interface %s cannot broadcast (it is down, has no IPv4 address, or is "
                     "loopback or point-to-point)",
                     interface);
        return -1;
    }
    self->actor = zactor_new (zbeacon, NULL);
    if (!self->actor) {
        s_set_error ("cannot start zbeacon");
        return -1;
    }
    pthread_mutex_lock (&s_zsys_lock);
    zsys_set_interface (interface);
    zsock_send (self->actor, "si", "CONFIGURE", port);
    char *hostname = zstr_recv (self->actor);
    pthread_mutex_unlock (&s_zsys_lock);

    bool configured = hostname && *hostname;
    zstr_free (&hostname);
    if (!configured) {
        s_set_error ("zbeacon cannot open UDP port %d on %s", port, interface);
        return -1;
    }
    zsock_send (self->actor, "sb", "SUBSCRIBE", self->filter, (size_t) S_FILTER_SIZE);
    return 0;
}

shoal_beacon_t *
shoal_beacon_new (const char *interface, int port, uint64_t mesh_id)
{
    if (!interface || !*interface) {
        s_set_error ("no interface given");
        return NULL;
    }
    if (port < 1 || port > 65535) {
        s_set_error ("UDP port %d out of range 1-65535", port);
        return NULL;
    }
    shoal_beacon_t *self = calloc (1, sizeof *self);
    if (!self) {
        s_set_error ("out of memory");
        return NULL;
    }
    self->fd = -1;
    memcpy (self->filter, s_prefix, sizeof s_prefix);
    s_put_u64 (self->filter + 4, mesh_id);

    int rc = streq (interface, "lo") ? s_open_loopback (self, port)
                                     : s_open_zbeacon (self, interface, port);
    if (rc)
        shoal_beacon_destroy (&self);
    return self;
}

void
shoal_beacon_destroy (shoal_beacon_t **self_p)
{
    assert (self_p);
    shoal_beacon_t *self = *self_p;
    if (self) {
        zactor_destroy (&self->actor);
        if (self->fd != -1)
            close (self->fd);
        free (self);
        *self_p = NULL;
    }
}

const char *
shoal_beacon_error (void)
{
    return s_error;
}

//  --------------------------------------------------------------------------
//  Sending

static void
s_send_loopback (shoal_beacon_t *self)
{
    //  A failed send (lo went down, a full buffer) is retried at the next
    //  interval; discovery tolerates lost beacons by design.
    (void) sendto (self->fd, self->payload, self->payload_size, 0,
                   (struct sockaddr *) &self->broadcast, sizeof self->broadcast);
}

int
shoal_beacon_publish (shoal_beacon_t *self, const shoal_beacon_msg_t *msg, int interval_ms)
{
    assert (self);
    assert (msg);
    if (interval_ms <= 0)
        return -1;
    uint8_t payload[SHOAL_BEACON_SIZE_SECURE];
    size_t size = shoal_beacon_encode (msg, payload);
    if (self->actor)
        return zsock_send (self->actor, "sbi", "PUBLISH", payload, size, interval_ms);

    memcpy (self->payload, payload, size);
    self->payload_size = size;
    self->interval_ms = interval_ms;
    s_send_loopback (self);
    self->send_at = s_now_ms () + interval_ms;
    return 0;
}

void
shoal_beacon_silence (shoal_beacon_t *self)
{
    assert (self);
    if (self->actor)
        zstr_sendx (self->actor, "SILENCE", NULL);
    self->payload_size = 0;
}

int
shoal_beacon_tick (shoal_beacon_t *self)
{
    assert (self);
    if (self->actor || self->payload_size == 0)
        return -1;
    int64_t now = s_now_ms ();
    if (now >= self->send_at) {
        s_send_loopback (self);
        self->send_at = now + self->interval_ms;
    }
    return (int) (self->send_at - now);
}

//  --------------------------------------------------------------------------
//  Receiving

void *
shoal_beacon_socket (shoal_beacon_t *self)
{
    assert (self);
    return self->actor ? zsock_resolve (self->actor) : NULL;
}

int
shoal_beacon_fd (shoal_beacon_t *self)
{
    assert (self);
    return self->fd;
}

static int
s_recv_loopback (shoal_beacon_t *self, char *ip, size_t ip_size, shoal_beacon_msg_t *msg)
{
    for (int budget = 0; budget < S_RECV_BUDGET; budget++) {
        uint8_t buffer[S_DATAGRAM_MAX];
        struct sockaddr_in from;
        socklen_t from_size = sizeof from;
        //  MSG_TRUNC returns the datagram's real size, so an oversized one
        //  is refused rather than read as its first bytes.
        ssize_t size = recvfrom (self->fd, buffer, sizeof buffer, MSG_TRUNC | MSG_DONTWAIT,
                                 (struct sockaddr *) &from, &from_size);
        if (size == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return 0;
            return -1;
        }
        if ((size_t) size > sizeof buffer) {
            self->dropped++;
            continue;
        }
        if (s_accept (self, buffer, (size_t) size, msg)) {
            char address[INET_ADDRSTRLEN] = "";
            if (from.sin_family == AF_INET)
                inet_ntop (AF_INET, &from.sin_addr, address, sizeof address);
            s_copy_ip (ip, ip_size, address);
            return 1;
        }
    }
    return 0;
}

static int
s_recv_zbeacon (shoal_beacon_t *self, char *ip, size_t ip_size, shoal_beacon_msg_t *msg)
{
    zsock_t *pipe = zactor_sock (self->actor);
    for (int budget = 0; budget < S_RECV_BUDGET; budget++) {
        //  Only receive what is already there: zbeacon sends each beacon
        //  as one two-frame message, so it is all there or not at all.
        if (!(zsock_events (pipe) & ZMQ_POLLIN))
            return 0;
        zmsg_t *received = zmsg_recv (pipe);
        if (!received)
            return -1;
        bool accepted = false;
        zframe_t *sender = zmsg_first (received);
        zframe_t *payload = zmsg_next (received);
        if (zmsg_size (received) == 2
            && s_accept (self, zframe_data (payload), zframe_size (payload), msg)) {
            char *address = zframe_strdup (sender);
            s_copy_ip (ip, ip_size, address ? address : "");
            free (address);
            accepted = true;
        }
        else if (zmsg_size (received) != 2)
            self->dropped++;
        zmsg_destroy (&received);
        if (accepted)
            return 1;
    }
    return 0;
}

int
shoal_beacon_recv (shoal_beacon_t *self, char *ip, size_t ip_size, shoal_beacon_msg_t *msg)
{
    assert (self);
    assert (msg);
    return self->actor ? s_recv_zbeacon (self, ip, ip_size, msg)
                       : s_recv_loopback (self, ip, ip_size, msg);
}

uint64_t
shoal_beacon_dropped (const shoal_beacon_t *self)
{
    assert (self);
    return self->dropped;
}
