/*  test_secure_keys - the shoal_secure class: the node's keypair, the
    allow-list directory and how it follows changes on disk, ENDPOINT#KEY
    parsing, and ZAP authentication of CURVE sockets (one handler shared
    by two allow-lists in this process).

    Sockets are on 127.0.0.1 only (CURVE does not apply to inproc). */

#include "shoal_secure.h"
#include "tap.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

//  Makes a certificate pair DIR/FILE (+ _secret), named name (NULL = no name).
static zcert_t *
s_cert (const char *dir, const char *file, const char *name)
{
    zcert_t *cert = zcert_new ();
    if (name)
        zcert_set_meta (cert, "name", "%s", name);
    char path[4200];
    snprintf (path, sizeof path, "%s/%s", dir, file);
    if (zcert_save (cert, path))
        bail ("cannot save %s", path);
    return cert;
}

//  Sends "hello" from a CURVE client with cert to server (key server_key)
//  at endpoint; true when the server got it within timeout_ms, and then
//  *user_id gets the User-Id the server saw (caller frees).
static bool
s_try (zsock_t *server, const char *endpoint, zcert_t *cert, const char *server_key, int timeout_ms,
       char **user_id)
{
    zsock_t *client = zsock_new (ZMQ_DEALER);
    zsock_set_linger (client, 0);
    zcert_apply (cert, client);
    zsock_set_curve_serverkey (client, server_key);
    zsock_connect (client, "%s", endpoint);
    zstr_send (client, "hello");
    zpoller_t *poller = zpoller_new (server, NULL);
    bool got = false;
    if (zpoller_wait (poller, timeout_ms) == server) {
        zmsg_t *msg = zmsg_recv (server);
        zframe_t *routing = zmsg_first (msg);
        zframe_t *body = zmsg_next (msg);
        got = body && zframe_streq (body, "hello");
        if (got && user_id) {
            const char *meta = zframe_meta (body, "User-Id");
            *user_id = meta ? strdup (meta) : NULL;
        }
        (void) routing;
        zmsg_destroy (&msg);
    }
    zpoller_destroy (&poller);
    zsock_destroy (&client);
    return got;
}

static int
s_collect (void *arg, const char *path, zcert_t *cert)
{
    char name[64];
    shoal_secure_cert_name (cert, path, name, sizeof name);
    strcat ((char *) arg, name);
    strcat ((char *) arg, " ");
    return 0;
}

//  The walk and the naming rule that the allow-list and `shoal keys` share.
static void
test_cert_walk (void)
{
    char dir[4096];
    snprintf (dir, sizeof dir, "%s/walk", tap_tmpdir ());
    mkdir (dir, 0700);
    zcert_t *certs[4] = {s_cert (dir, "b.cert", NULL), s_cert (dir, "a.cert.old", NULL),
                         s_cert (dir, "c.cert", "carol"), s_cert (dir, ".hidden.cert", NULL)};
    char junk[4200];
    snprintf (junk, sizeof junk, "%s/notes.txt", dir);
    FILE *file = fopen (junk, "w");
    if (file) {
        fputs ("not a certificate\n", file);
        fclose (file);
    }
    char names[512] = "";
    is_int (shoal_secure_each_cert (dir, s_collect, names), 0, "each_cert walks a directory");
    is_str (names, "a.cert.old b carol ",
            "in file order, public certificates only, named by metadata, else the file name "
            "without a trailing .cert (none cut inside)");
    snprintf (junk, sizeof junk, "%s/b.cert_secret", dir);
    char name[64];
    shoal_secure_cert_name (certs[0], junk, name, sizeof name);
    is_str (name, "b", "a secret file's name drops _secret and .cert");
    is_int (shoal_secure_each_cert (tap_path ("no-such-dir"), s_collect, names), -1,
            "each_cert of a missing directory is -1");
    for (int i = 0; i < 4; i++)
        zcert_destroy (&certs[i]);
}

static int
s_collect_keys (void *arg, const char *path, zcert_t *cert)
{
    (void) path;
    strcat ((char *) arg, zcert_public_txt (cert));
    strcat ((char *) arg, " ");
    return 0;
}

//  Each file is read once, as a public certificate: a "_secret" beside it
//  (which zcert_load would read instead) plays no part, and a key that is
//  not Z85 is no key.
static void
test_cert_read (void)
{
    char dir[4096], path[4200];
    snprintf (dir, sizeof dir, "%s/read", tap_tmpdir ());
    mkdir (dir, 0700);
    zcert_t *public_cert = s_cert (dir, "p.cert", "pat");
    zcert_t *other = zcert_new ();
    snprintf (path, sizeof path, "%s/p.cert_secret", dir);
    if (zcert_save_secret (other, path)) //  another key beside it
        bail ("cannot save %s", path);
    snprintf (path, sizeof path, "%s/z.cert", dir);
    FILE *file = fopen (path, "w");
    if (file) { //  40 characters, but '~' is not Z85
        fputs ("curve\n    public-key = \"~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\"\n", file);
        fclose (file);
    }
    char keys[512] = "", expect[512];
    is_int (shoal_secure_each_cert (dir, s_collect_keys, keys), 0, "each_cert reads the directory");
    snprintf (expect, sizeof expect, "%s ", zcert_public_txt (public_cert));
    is_str (keys, expect,
            "the public file's key, not its _secret sibling's; a key that is not Z85 is skipped");
    char names[512] = "";
    shoal_secure_each_cert (dir, s_collect, names);
    is_str (names, "pat ", "and the public file's metadata names it");
    snprintf (path, sizeof path, "%s/p.cert", dir);
    zcert_t *loaded = shoal_secure_load_cert (path);
    ok (loaded && streq (zcert_public_txt (loaded), zcert_public_txt (public_cert)),
        "load_cert (as `shoal keys allow` reads a file) gives the public file's key too");
    zcert_destroy (&loaded);
    //  A FIFO is no certificate, and reading the directory does not wait
    //  on it.
    snprintf (path, sizeof path, "%s/f.cert", dir);
    ok (mkfifo (path, 0600) == 0 && !shoal_secure_load_cert (path), "a FIFO is not a certificate");
    keys[0] = 0;
    shoal_secure_each_cert (dir, s_collect_keys, keys); //  a wait would hang the test here
    is_str (keys, expect, "and each_cert passes over it");
    zcert_destroy (&public_cert);
    zcert_destroy (&other);
}

//  Sends one ZAP request of frames (NULL ends them; a frame "#key" is
//  key's 32 bytes) to the process's handler; returns the reply's status
//  code, and its request id and user id in the buffers ("" when absent).
static char *
s_zap (const char **frames, zcert_t *key, char *request_id, char *user_id)
{
    static char status[16];
    snprintf (status, sizeof status, "none");
    request_id[0] = user_id[0] = 0;
    zsock_t *client = zsock_new_req ("inproc://zeromq.zap.01");
    zsock_set_rcvtimeo (client, 2000);
    zmsg_t *msg = zmsg_new ();
    for (size_t i = 0; frames[i]; i++)
        if (streq (frames[i], "#key"))
            zmsg_addmem (msg, zcert_public_key (key), 32);
        else
            zmsg_addstr (msg, frames[i]);
    zmsg_send (&msg, client);
    zmsg_t *reply = zmsg_recv (client);
    if (reply && zmsg_size (reply) == 6) {
        char *version = zmsg_popstr (reply), *id = zmsg_popstr (reply), *code = zmsg_popstr (reply),
             *text = zmsg_popstr (reply), *user = zmsg_popstr (reply);
        snprintf (status, sizeof status, "%s", streq (version, "1.0") ? code : "version");
        snprintf (request_id, 32, "%s", id);
        snprintf (user_id, SHOAL_KEY_TEXT_SIZE, "%s", user);
        zstr_free (&version);
        zstr_free (&id);
        zstr_free (&code);
        zstr_free (&text);
        zstr_free (&user);
    }
    zmsg_destroy (&reply);
    zsock_destroy (&client);
    return status;
}

//  The ZAP handler itself, as libzmq speaks to it (RFC 27): a key in the
//  domain's allow-list gets 200 and its key as user id; anything else,
//  well formed or not, gets 400 and no user id, and the handler goes on.
static void
test_zap_handler (const char *certs)
{
    char keys[4300], node_cert[4300];
    snprintf (keys, sizeof keys, "%s/zap-keys", tap_tmpdir ());
    snprintf (node_cert, sizeof node_cert, "%s/zap-node.cert", certs);
    mkdir (keys, 0755);
    zcert_t *friend = s_cert (keys, "friend.cert", NULL);
    zcert_t *stranger = zcert_new ();
    shoal_secure_t *secure = shoal_secure_new (keys, node_cert, "zap", "test-zap");
    ok (secure != NULL, "zap: a secure node registers with the handler");
    if (!secure)
        return;
    char id[32], user[SHOAL_KEY_TEXT_SIZE];
    const char *good[] = {"1.0", "7", "test-zap", "127.0.0.1", "", "CURVE", "#key", NULL};
    is_str (s_zap (good, friend, id, user), "200", "zap: an allowed key in its domain gets 200");
    is_str (id, "7", "zap: the reply echoes the request id");
    is_str (user, zcert_public_txt (friend), "zap: the user id is the key's Z85 text");
    is_str (s_zap (good, stranger, id, user), "400", "zap: a key not in the list gets 400");
    is_str (user, "", "zap: and no user id");
    const char *other_domain[] = {"1.0", "8", "test-other", "127.0.0.1", "", "CURVE", "#key", NULL};
    is_str (s_zap (other_domain, friend, id, user), "400",
            "zap: an allowed key in a domain no node has gets 400");
    const char *plain[] = {"1.0", "9", "test-zap", "127.0.0.1", "", "PLAIN", "#key", NULL};
    is_str (s_zap (plain, friend, id, user), "400", "zap: another mechanism gets 400");
    const char *version[] = {"2.0", "10", "test-zap", "127.0.0.1", "", "CURVE", "#key", NULL};
    is_str (s_zap (version, friend, id, user), "400", "zap: another version gets 400");
    const char *short_key[] = {"1.0", "11", "test-zap", "127.0.0.1", "", "CURVE", "abc", NULL};
    is_str (s_zap (short_key, friend, id, user), "400",
            "zap: credentials of the wrong size get 400");
    const char *cut[] = {"1.0", "12", NULL};
    is_str (s_zap (cut, friend, id, user), "400", "zap: a request cut short gets 400");
    is_str (id, "12", "zap: still with its request id");
    is_str (s_zap (good, friend, id, user), "200", "zap: the handler still answers after all that");
    is_int ((int) shoal_secure_refused (secure), 1,
            "zap: refusals of the node's own domain are counted (the stranger)");
    shoal_secure_destroy (&secure);
    zcert_destroy (&friend);
    zcert_destroy (&stranger);
}

//  An allow-list of 2,000 keys: each is allowed, a stranger is not, and
//  removing two of them (first and last by key) is one revocation.
static void
test_big_allow_list (const char *certs)
{
    enum { KEYS = 2000 };
    char keys[4300], node_cert[4300], path[4400];
    snprintf (keys, sizeof keys, "%s/big-keys", tap_tmpdir ());
    snprintf (node_cert, sizeof node_cert, "%s/big-node.cert", certs);
    mkdir (keys, 0755);
    char (*texts)[SHOAL_KEY_TEXT_SIZE] = calloc (KEYS, SHOAL_KEY_TEXT_SIZE);
    size_t lowest = 0, highest = 0;
    for (size_t i = 0; i < KEYS; i++) {
        zcert_t *cert = zcert_new ();
        snprintf (texts[i], SHOAL_KEY_TEXT_SIZE, "%s", zcert_public_txt (cert));
        snprintf (path, sizeof path, "%s/k%zu.cert", keys, i);
        zcert_save_public (cert, path);
        zcert_destroy (&cert);
        if (strcmp (texts[i], texts[lowest]) < 0)
            lowest = i;
        if (strcmp (texts[i], texts[highest]) > 0)
            highest = i;
    }
    shoal_secure_t *secure = shoal_secure_new (keys, node_cert, "big", "test-big");
    ok (secure != NULL, "a node with %d keys in its allow-list", KEYS);
    if (!secure) {
        free (texts);
        return;
    }
    size_t allowed = 0;
    for (size_t i = 0; i < KEYS; i++)
        allowed += shoal_secure_allowed (secure, texts[i]);
    is_int (allowed, KEYS, "every one of them is allowed");
    zcert_t *stranger = zcert_new ();
    ok (!shoal_secure_allowed (secure, zcert_public_txt (stranger)), "a stranger is not");
    zcert_destroy (&stranger);
    is_int (shoal_secure_check (secure), 0, "nothing revoked");
    //  One at a time, so that a walk that missed either end shows.
    snprintf (path, sizeof path, "%s/k%zu.cert", keys, highest);
    unlink (path);
    is_int (shoal_secure_check (secure), 1, "removing the last key (in key order) is a revocation");
    snprintf (path, sizeof path, "%s/k%zu.cert", keys, lowest);
    unlink (path);
    is_int (shoal_secure_check (secure), 1, "so is removing the first");
    ok (!shoal_secure_allowed (secure, texts[lowest])
            && !shoal_secure_allowed (secure, texts[highest])
            && shoal_secure_allowed (
                secure,
                texts[(lowest + 1) % KEYS == highest ? (lowest + 2) % KEYS : (lowest + 1) % KEYS]),
        "they are refused, the others still allowed");
    is_int (shoal_secure_check (secure), 0, "reported once");
    shoal_secure_destroy (&secure);
    free (texts);
}

int
main (void)
{
    plan_lazy ();
    char keys[4200], keys2[4200], certs[4200], node_cert[4300];
    snprintf (keys, sizeof keys, "%s/keys", tap_tmpdir ());
    snprintf (keys2, sizeof keys2, "%s/keys2", tap_tmpdir ());
    snprintf (certs, sizeof certs, "%s/certs", tap_tmpdir ());
    snprintf (node_cert, sizeof node_cert, "%s/node.cert", certs);
    mkdir (keys, 0755);
    mkdir (keys2, 0755);
    mkdir (certs, 0755);

    //  Keys as text.
    zcert_t *alice = s_cert (certs, "alice.cert", "alice");
    zcert_t *bob = s_cert (certs, "bob.cert", NULL);
    ok (shoal_secure_key_valid (zcert_public_txt (alice)), "a Z85 public key is a key");
    ok (!shoal_secure_key_valid ("short"), "a short text is not");
    char bad[41];
    memset (bad, '~', 40);
    bad[40] = 0;
    ok (!shoal_secure_key_valid (bad), "40 characters outside Z85 are not");
    ok (!shoal_secure_key_valid (NULL), "NULL is not");

    //  The node's keypair.
    shoal_secure_t *secure = shoal_secure_new (keys, node_cert, "n1", "test-1");
    ok (secure != NULL, "secure mode opens with an empty allow-list");
    struct stat info;
    char secret[4400];
    snprintf (secret, sizeof secret, "%s_secret", node_cert);
    ok (stat (node_cert, &info) == 0 && stat (secret, &info) == 0 && (info.st_mode & 077) == 0,
        "the node's keypair is made on first use, the secret private to its owner");
    char first_key[SHOAL_KEY_TEXT_SIZE];
    snprintf (first_key, sizeof first_key, "%s", shoal_secure_public_txt (secure));
    shoal_secure_destroy (&secure);
    ok (secure == NULL, "destroy nulls the pointer");
    shoal_secure_destroy (&secure);
    secure = shoal_secure_new (keys, node_cert, "n1", "test-1");
    ok (secure && streq (shoal_secure_public_txt (secure), first_key),
        "the same keypair is loaded on the next start");
    shoal_secure_t *none = shoal_secure_new (tap_path ("missing"), node_cert, "n", "test-x");
    ok (!none && strstr (shoal_secure_error (), "not a directory"),
        "a missing keys directory is refused: %s", shoal_secure_error ());
    char lonely[4300];
    snprintf (lonely, sizeof lonely, "%s/lonely.cert", certs);
    zcert_save_public (alice, lonely);
    none = shoal_secure_new (keys, lonely, "n", "test-x");
    ok (!none && strstr (shoal_secure_error (), "secret"),
        "a public certificate without its secret half is refused");

    //  The allow-list follows the directory.
    ok (!shoal_secure_allowed (secure, zcert_public_txt (alice)), "alice is not allowed yet");
    char path[4300];
    snprintf (path, sizeof path, "%s/alice.cert", keys);
    zcert_save_public (alice, path);
    ok (shoal_secure_allowed (secure, zcert_public_txt (alice)),
        "a certificate added to the directory is allowed at once");
    snprintf (path, sizeof path, "%s/bob.cert", keys);
    zcert_save (bob, path);
    ok (shoal_secure_allowed (secure, zcert_public_txt (bob)),
        "so is one saved with its secret beside it");
    is_int (shoal_secure_check (secure), 0, "adding keys is no revocation");

    //  ENDPOINT#KEY.
    char endpoint[128], key[SHOAL_KEY_TEXT_SIZE];
    ok (shoal_secure_split (NULL, "tcp://127.0.0.1:7001", endpoint, sizeof endpoint, key) == 0
            && streq (endpoint, "tcp://127.0.0.1:7001") && key[0] == 0,
        "an endpoint without a key");
    char spec[200];
    snprintf (spec, sizeof spec, "tcp://10.0.0.1:7001#%s", zcert_public_txt (bob));
    ok (shoal_secure_split (NULL, spec, endpoint, sizeof endpoint, key) == 0
            && streq (endpoint, "tcp://10.0.0.1:7001") && streq (key, zcert_public_txt (bob)),
        "ENDPOINT#KEY with a Z85 key (which may itself hold '#')");
    ok (shoal_secure_split (NULL, "tcp://h:1#alice", endpoint, sizeof endpoint, key) == -1,
        "a name needs an allow-list to look it up");
    ok (shoal_secure_split (secure, "tcp://h:1#alice", endpoint, sizeof endpoint, key) == 0
            && streq (key, zcert_public_txt (alice)),
        "#NAME is the certificate's name in the allow-list");
    ok (shoal_secure_split (secure, "tcp://h:1#bob", endpoint, sizeof endpoint, key) == 0
            && streq (key, zcert_public_txt (bob)),
        "or its file name, when it has no name");
    ok (shoal_secure_split (secure, "tcp://h:1#carol", endpoint, sizeof endpoint, key) == -1,
        "an unknown name is refused");
    ok (shoal_secure_split (NULL, "tcp://a-very-long-host-name:1", endpoint, 8, key) == -1,
        "an endpoint that does not fit is refused");

    //  ZAP: a CURVE server with this node's allow-list.
    zsock_t *server = zsock_new (ZMQ_ROUTER);
    zsock_set_linger (server, 0);
    shoal_secure_server (secure, server);
    int port = zsock_bind (server, "tcp://127.0.0.1:*");
    ok (port > 0, "a CURVE server binds");
    char where[64];
    snprintf (where, sizeof where, "tcp://127.0.0.1:%d", port);
    char *user = NULL;
    ok (s_try (server, where, alice, first_key, 5000, &user), "an allowed key gets in");
    ok (user && streq (user, zcert_public_txt (alice)),
        "and the server sees its key as User-Id (how a node learns a caller's key)");
    free (user);
    zcert_t *mallory = zcert_new ();
    ok (!s_try (server, where, mallory, first_key, 500, NULL), "a key not allowed does not");
    ok (shoal_secure_refused (secure) >= 1, "and the refusal is counted (%llu)",
        (unsigned long long) shoal_secure_refused (secure));

    //  A second node in this process, its own allow-list, the same handler.
    char node2_cert[4300];
    snprintf (node2_cert, sizeof node2_cert, "%s/node2.cert", certs);
    snprintf (path, sizeof path, "%s/mallory.cert", keys2);
    zcert_save_public (mallory, path);
    shoal_secure_t *secure2 = shoal_secure_new (keys2, node2_cert, "n2", "test-2");
    ok (secure2 != NULL, "a second secure node in the same process");
    zsock_t *server2 = zsock_new (ZMQ_ROUTER);
    zsock_set_linger (server2, 0);
    shoal_secure_server (secure2, server2);
    int port2 = zsock_bind (server2, "tcp://127.0.0.1:*");
    char where2[64];
    snprintf (where2, sizeof where2, "tcp://127.0.0.1:%d", port2);
    char key2[SHOAL_KEY_TEXT_SIZE];
    snprintf (key2, sizeof key2, "%s", shoal_secure_public_txt (secure2));
    ok (s_try (server2, where2, mallory, key2, 5000, NULL), "its own allow-list lets mallory in");
    ok (!s_try (server2, where2, alice, key2, 500, NULL), "and keeps alice out");
    ok (s_try (server, where, alice, first_key, 5000, NULL),
        "while the first node still takes alice");

    //  Revocation.
    snprintf (path, sizeof path, "%s/alice.cert", keys);
    unlink (path);
    ok (!shoal_secure_allowed (secure, zcert_public_txt (alice)),
        "a certificate removed from the directory is no longer allowed");
    is_int (shoal_secure_check (secure), 1, "check reports the revocation");
    is_int (shoal_secure_check (secure), 0, "once");
    ok (!s_try (server, where, alice, first_key, 500, NULL),
        "a new connection of the revoked key is refused");
    //  A file rewritten in place leaves the directory's times as they
    //  were: check's periodic rescan (2 s) finds it.
    snprintf (path, sizeof path, "%s/bob.cert", keys);
    struct stat before, after;
    stat (path, &before);
    zcert_save_public (alice, path);
    ok (stat (path, &after) == 0 && after.st_ino == before.st_ino,
        "bob's certificate is rewritten in place with alice's key");
    zclock_sleep (2100);
    is_int (shoal_secure_check (secure), 1, "check's rescan reports bob's key gone");
    ok (!shoal_secure_allowed (secure, zcert_public_txt (bob))
            && shoal_secure_allowed (secure, zcert_public_txt (alice)),
        "bob is refused and alice, now in his file, allowed");

    zsock_destroy (&server);
    zsock_destroy (&server2);
    shoal_secure_destroy (&secure);
    shoal_secure_destroy (&secure2);
    secure = shoal_secure_new (keys, node_cert, "n1", "test-1");
    ok (secure != NULL, "the handler starts again after every node stopped");
    shoal_secure_destroy (&secure);
    zcert_destroy (&alice);
    zcert_destroy (&bob);
    zcert_destroy (&mallory);
    test_cert_walk ();
    test_cert_read ();
    test_big_allow_list (certs);
    test_zap_handler (certs);
    return done_testing ();
}
