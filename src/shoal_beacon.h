/*  =========================================================================
    shoal_beacon - UDP discovery of the nodes of a mesh

    Every node sends a small binary beacon at a fixed interval and listens
    for the beacons of others. The payload is the contract of DESIGN.md
    (network byte order):

        0-3    'S' 'H' 'L' 0x01 (protocol and version)
        4-11   mesh id: FNV-1a 64-bit hash of the mesh name
        12-27  node id
        28-29  PUB port
        30-31  ROUTER port
        32     flags: bit 0 = leaving
        33-64  CURVE public key, present only when security is on

    The first 12 bytes are the receive filter, so beacons of other meshes
    and other protocols are dropped before they are parsed.

    Transports:
    - a LAN interface name: czmq's zbeacon (UDP broadcast on that
      interface), the ZeroMQ ecosystem's discovery;
    - "lo": a loopback beacon, since loopback cannot broadcast for zbeacon:
      the same bytes sent to 127.255.255.255 with SO_BROADCAST and read by
      every socket bound to that address and port (SO_REUSEADDR and
      SO_REUSEPORT), so any number of nodes on one host see each other.

    A beacon object sends (publish) and receives (recv) on one transport.
    It may receive its own beacons (the loopback beacon always does; zbeacon
    drops exact copies of what it sends): the caller ignores its own node id.
    ========================================================================= */

#ifndef SHOAL_BEACON_H_INCLUDED
#define SHOAL_BEACON_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHOAL_BEACON_SIZE 33        //  payload without a key
#define SHOAL_BEACON_SIZE_SECURE 65 //  payload with a CURVE public key
#define SHOAL_BEACON_PORT 5680      //  default UDP port
#define SHOAL_BEACON_FLAG_LEAVING 1 //  flags bit 0

typedef struct {
    uint64_t mesh_id;     //  shoal_mesh_id of the mesh name
    uint8_t node[16];     //  node id
    uint16_t pub_port;    //  PUB port
    uint16_t router_port; //  ROUTER port
    bool leaving;         //  the node is stopping
    bool has_key;         //  key is present (security on)
    uint8_t key[32];      //  CURVE public key
} shoal_beacon_msg_t;

//  FNV-1a 64-bit hash of the mesh name.
uint64_t shoal_mesh_id (const char *mesh);

//  Encodes msg into out (at least SHOAL_BEACON_SIZE_SECURE bytes); returns
//  the size written (33 or 65).
size_t shoal_beacon_encode (const shoal_beacon_msg_t *msg, uint8_t *out);

//  Decodes a payload: 0, or -1 when it is not a shoal beacon of version 1
//  (bad prefix, size other than 33 or 65).
int shoal_beacon_decode (const uint8_t *data, size_t size, shoal_beacon_msg_t *msg);

typedef struct _shoal_beacon_t shoal_beacon_t;

//  Opens the beacon on interface ("lo" or a LAN interface name) and UDP
//  port, receiving only beacons of mesh_id. NULL on failure, with the
//  reason in shoal_beacon_error () (for example: no such interface, or
//  an interface that cannot broadcast). zbeacon takes its interface from
//  czmq's process-wide setting, so a process uses one LAN interface.
shoal_beacon_t *shoal_beacon_new (const char *interface, int port, uint64_t mesh_id);
void shoal_beacon_destroy (shoal_beacon_t **self_p);
const char *shoal_beacon_error (void);

//  Starts sending msg every interval_ms (replacing what was sent before);
//  the first beacon goes out at once. 0, or -1 (interval_ms not positive).
int shoal_beacon_publish (shoal_beacon_t *self, const shoal_beacon_msg_t *msg, int interval_ms);

//  Stops sending.
void shoal_beacon_silence (shoal_beacon_t *self);

//  What to poll for received beacons: a ZeroMQ socket handle (for
//  zmq_poll's socket member, NULL when the transport has none) or a file
//  descriptor (fd member, -1 when it has none). Exactly one is set.
void *shoal_beacon_socket (shoal_beacon_t *self);
int shoal_beacon_fd (shoal_beacon_t *self);

//  Receives one beacon without blocking. 1 and msg plus the sender's IPv4
//  address in ip (dotted quad) when a valid beacon of our mesh arrived;
//  0 when nothing (valid) was waiting; -1 on error. Invalid payloads are
//  dropped and counted.
int shoal_beacon_recv (shoal_beacon_t *self, char *ip, size_t ip_size, shoal_beacon_msg_t *msg);

//  Payloads received and dropped as invalid (wrong size, prefix or mesh).
//  With zbeacon, payloads that do not start with our 12-byte filter are
//  dropped inside zbeacon and never reach this count.
uint64_t shoal_beacon_dropped (const shoal_beacon_t *self);

//  Drives sending for transports without a thread of their own (the
//  loopback beacon): sends if the interval has passed. Call it from the
//  poll loop at least every interval_ms / 2; returns ms until the next
//  send is due (or -1 when silent, and always for zbeacon, which sends
//  from its own thread).
int shoal_beacon_tick (shoal_beacon_t *self);

#ifdef __cplusplus
}
#endif

#endif
