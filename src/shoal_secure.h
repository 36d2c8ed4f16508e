/*  =========================================================================
    shoal_secure - CURVE keys, the allow-list and ZAP authentication

    Secure mode (promise 8 of DESIGN.md): every node has one CURVE
    keypair, kept in its data directory as a czmq certificate pair
    (node.cert, node.cert_secret; made on first start). Its PUB and ROUTER
    are CURVE servers with that key; its SUB and DEALERs connect to peers
    as CURVE clients with the same key, so a node is known by one public
    key whichever way a connection goes.

    The mesh's allow-list is a directory of public certificates in czmq's
    zcertstore layout (one zcert file per key, *_secret files ignored).
    The process runs one ZAP handler (the ZeroMQ authentication protocol,
    RFC 27) shared by every secure node in it: each node's server sockets
    carry a ZAP domain of their own, and the handler answers a handshake
    by looking the client's key up in that domain's allow-list, re-read
    from disk whenever the directory changed. A key added is therefore
    allowed at the next handshake and a key removed is refused at the next
    one; shoal_secure_check tells the engine when a key went, so that it
    can cut the connections already made (it re-creates its server
    sockets: everyone must handshake again).

    czmq's zauth is not used for the handler because ZeroMQ admits one
    ZAP handler per context and zauth has one allow-list for all of it,
    while one process may embed several nodes with allow-lists of their own.

    Peer endpoints may carry the peer's public key: tcp://HOST:PORT#KEY,
    where KEY is the Z85 text of the key (40 characters) or the name of a
    certificate in the allow-list (its metadata `name`, or its file name
    without .cert). In secure mode a static peer needs one.
    ========================================================================= */

#ifndef SHOAL_SECURE_H_INCLUDED
#define SHOAL_SECURE_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHOAL_KEY_SIZE 32      //  a CURVE public key, binary
#define SHOAL_KEY_TEXT_SIZE 41 //  Z85 text of a key, with its NUL

typedef struct _shoal_secure_t shoal_secure_t;

//  Opens secure mode for one node: loads the certificate cert_path (the
//  public file; the secret one is cert_path + "_secret"), or makes and
//  saves a new pair there named `name` when neither file exists; reads
//  the allow-list keys_dir and registers `domain` with the process's ZAP
//  handler (started on first use). NULL on failure, with the reason in
//  shoal_secure_error ().
shoal_secure_t *shoal_secure_new (const char *keys_dir, const char *cert_path, const char *name,
                                  const char *domain);
void shoal_secure_destroy (shoal_secure_t **self_p);
const char *shoal_secure_error (void);

//  The node's public key, as Z85 text and as 32 bytes.
const char *shoal_secure_public_txt (const shoal_secure_t *self);
const uint8_t *shoal_secure_public_key (const shoal_secure_t *self);

//  Makes socket a CURVE server authenticated against the allow-list.
//  Call before bind.
void shoal_secure_server (shoal_secure_t *self, zsock_t *socket);

//  Makes socket a CURVE client of the server with public key server_key
//  (Z85). ZeroMQ copies the options at connect time, so one socket (the
//  engine's SUB) can connect to several servers with different keys by
//  calling this before each connect.
void shoal_secure_client (shoal_secure_t *self, zsock_t *socket, const char *server_key);

//  True when key (Z85 text) is in the allow-list now (re-read if changed).
bool shoal_secure_allowed (shoal_secure_t *self, const char *key);

//  Re-reads the allow-list if it changed. 1 when a key allowed before is
//  no longer allowed (a revocation: cut existing connections), else 0.
int shoal_secure_check (shoal_secure_t *self);

//  Handshakes the ZAP handler refused for this node so far.
uint64_t shoal_secure_refused (shoal_secure_t *self);

//  Splits "ENDPOINT#KEY" into endpoint and the key's Z85 text (key set to
//  "" when there is no #KEY). KEY may be Z85 text or, when self is not
//  NULL, the name of a certificate in the allow-list. 0, or -1 when KEY is
//  neither, or the endpoint does not fit.
int shoal_secure_split (shoal_secure_t *self, const char *spec, char *endpoint,
                        size_t endpoint_size, char key[SHOAL_KEY_TEXT_SIZE]);

//  True when text is the Z85 text of a 32-byte key.
bool shoal_secure_key_valid (const char *text);

//  The certificate in the file at path, read once as a public one: a
//  regular file of at most 16 KiB with a valid Z85 public key of 40
//  characters, and its metadata (anything without "public-key" is not
//  parsed: czmq's reader logs a syntax error for it). Unlike zcert_load it
//  never reads path's "_secret" sibling instead; the secret key is zero.
//  NULL when it is none. Caller owns return value.
zcert_t *shoal_secure_load_cert (const char *path);

//  Calls fn for each public certificate in dir, in name order: regular
//  files that load as certificates, not dotfiles, not *_secret. The node's
//  allow-list and `shoal keys` both read a directory this way. Stops at
//  the first non-zero fn returns and returns it; -1 when dir cannot be read.
typedef int (shoal_secure_cert_fn) (void *arg, const char *path, zcert_t *cert);
int shoal_secure_each_cert (const char *dir, shoal_secure_cert_fn *fn, void *arg);

//  The name a certificate goes by (what ENDPOINT#NAME resolves): its
//  metadata "name", else its file name without a trailing "_secret" and
//  ".cert"; cut to fit size.
void shoal_secure_cert_name (zcert_t *cert, const char *path, char *name, size_t size);

#ifdef __cplusplus
}
#endif

#endif
