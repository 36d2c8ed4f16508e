/*  =========================================================================
    shoal_secure - CURVE keys, the allow-list and ZAP authentication

    The allow-list of a node is a list of (key, name) read from its keys
    directory: every regular file not starting with '.' and not ending in
    "_secret" that reads as a public certificate gives its public key and
    its name (metadata `name`, else the file name without ".cert").
    The list is read again whenever the directory's change time moves
    (adding, removing or renaming a file does that), checked on every ZAP
    request, every allow-list question and every shoal_secure_check.

    ZAP: one handler per process, a czmq actor with a REP socket bound to
    inproc://zeromq.zap.01 in czmq's context (the one every zsock uses).
    It lives while at least one secure node does. A request (RFC 27) is

        "1.0" | request id | domain | address | routing id | mechanism | credentials...

    and the answer "1.0" | request id | "200" or "400" | text | user id | "".
    Only CURVE from a key in the domain's allow-list gets 200; the user
    id is the key's Z85 text, which the engine reads back as the
    "User-Id" property of the messages that connection brings.

    Invariants:
    1. Every secure node's server sockets carry its own ZAP domain
       ("shoal-" and the node id), and the handler is running before the
       first of them binds: ZeroMQ lets a handshake through when no
       handler is bound, so the order matters.
    2. The registry of nodes and their allow-lists is only touched with
       s_lock held (the handler thread and the engine threads share it);
       an allow-list is kept sorted by key. The engine reads its keys
       directory without the lock, then installs the list under it
       (s_update); only the ZAP handler reads under it.
    3. A key that was in the allow-list and is no longer sets `revoked`
       until shoal_secure_check reports it.
    ========================================================================= */

#include "shoal_secure.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

#define S_ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define S_RESCAN_MS 2000 //  re-read the allow-list at least this often in check

//  One allowed key.
typedef struct {
    char key[SHOAL_KEY_TEXT_SIZE]; //  Z85 text
    char name[64];                 //  certificate name
} s_allowed_t;

struct _shoal_secure_t {
    char *keys_dir;            //  the allow-list directory
    char domain[64];           //  ZAP domain of the node's server sockets
    zcert_t *cert;             //  the node's keypair
    s_allowed_t *allowed;      //  the allow-list as last read
    size_t allowed_count;      //  entries in allowed
    struct timespec dir_ctime; //  change time of keys_dir when last read
    struct timespec dir_mtime; //  modification time of keys_dir when last read
    bool loaded;               //  allowed was read at least once
    bool revoked;              //  a key went since the last check
    int64_t last_scan_ms;      //  when the directory was last read
    uint64_t installs;         //  lists installed so far
    uint64_t refused;          //  handshakes refused
};

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static zlistx_t *s_nodes;   //  registered shoal_secure_t (not owned)
static zactor_t *s_handler; //  the ZAP handler, while s_nodes is not empty
static __thread char s_error[10240];

void
shoal_secure_cert_name (zcert_t *cert, const char *path, char *name, size_t size)
{
    const char *meta = zcert_meta (cert, "name");
    if (meta && *meta) {
        snprintf (name, size, "%s", meta);
        return;
    }
    const char *base = strrchr (path, '/') ? strrchr (path, '/') + 1 : path;
    size_t length = strlen (base);
    if (length > 7 && memcmp (base + length - 7, "_secret", 7) == 0)
        length -= 7;
    if (length > 5 && memcmp (base + length - 5, ".cert", 5) == 0)
        length -= 5;
    snprintf (name, size, "%.*s", (int) length, base);
}

zcert_t *
shoal_secure_load_cert (const char *path)
{
    //  Only regular files are opened, and without blocking (nor taking a
    //  terminal): what is opened is looked at again, since a FIFO put in
    //  the file's place after the stat would hang the rescan.
    struct stat info;
    if (stat (path, &info) || !S_ISREG (info.st_mode))
        return NULL;
    int fd = open (path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char text[16385];
    ssize_t size = -1;
    if (fstat (fd, &info) == 0 && S_ISREG (info.st_mode) && info.st_size < (off_t) sizeof text)
        size = read (fd, text, sizeof text - 1);
    close (fd);
    if (size < 0)
        return NULL;
    text[size] = 0;
    if (!strstr (text, "public-key"))
        return NULL;
    zconfig_t *root = zconfig_str_load (text);
    const char *key = root ? zconfig_get (root, "/curve/public-key", NULL) : NULL;
    uint8_t public_key[SHOAL_KEY_SIZE], secret_key[SHOAL_KEY_SIZE] = {0};
    zcert_t *cert = NULL;
    if (shoal_secure_key_valid (key)) {
        zmq_z85_decode (public_key, key);
        cert = zcert_new_from (public_key, secret_key);
        zconfig_t *metadata = zconfig_locate (root, "/metadata");
        for (zconfig_t *item = metadata ? zconfig_child (metadata) : NULL; cert && item;
             item = zconfig_next (item))
            zcert_set_meta (cert, zconfig_name (item), "%s",
                            zconfig_value (item) ? zconfig_value (item) : "");
    }
    zconfig_destroy (&root);
    return cert;
}

static int
s_compare_names (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

int
shoal_secure_each_cert (const char *dir_path, shoal_secure_cert_fn *fn, void *arg)
{
    DIR *dir = opendir (dir_path);
    if (!dir)
        return -1;
    char **names = NULL;
    size_t count = 0, alloc = 0;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        const char *file = entry->d_name;
        size_t length = strlen (file);
        if (file[0] == '.' || (length > 7 && streq (file + length - 7, "_secret")))
            continue;
        if (count == alloc) {
            alloc = alloc ? 2 * alloc : 16;
            char **grown = (char **) realloc (names, alloc * sizeof *names);
            if (!grown)
                break;
            names = grown;
        }
        if (!(names[count] = strdup (file)))
            break;
        count++;
    }
    closedir (dir);
    //  In name order: the CLI lists them so, and readdir's order is the
    //  file system's.
    if (count > 1)
        qsort (names, count, sizeof *names, s_compare_names);
    int rc = 0;
    for (size_t i = 0; i < count; i++) {
        char path[4096];
        snprintf (path, sizeof path, "%s/%s", dir_path, names[i]);
        zcert_t *cert = rc == 0 ? shoal_secure_load_cert (path) : NULL;
        if (cert)
            rc = fn (arg, path, cert);
        zcert_destroy (&cert);
        free (names[i]);
    }
    free (names);
    return rc;
}

typedef struct {
    s_allowed_t *list; //  certificates read so far
    size_t count;      //  entries used
    size_t alloc;      //  entries allocated
} s_scan_t;

static int
s_scan_one (void *arg, const char *path, zcert_t *cert)
{
    s_scan_t *scan = (s_scan_t *) arg;
    if (scan->count == scan->alloc) {
        size_t alloc = scan->alloc ? 2 * scan->alloc : 16;
        s_allowed_t *grown = (s_allowed_t *) realloc (scan->list, alloc * sizeof *grown);
        if (!grown)
            return 0; //  an allow-list cut short only refuses more
        scan->list = grown;
        scan->alloc = alloc;
    }
    s_allowed_t *allowed = &scan->list[scan->count++];
    snprintf (allowed->key, sizeof allowed->key, "%s", zcert_public_txt (cert));
    shoal_secure_cert_name (cert, path, allowed->name, sizeof allowed->name);
    return 0;
}

static int
s_compare_keys (const void *a, const void *b)
{
    return strcmp (((const s_allowed_t *) a)->key, ((const s_allowed_t *) b)->key);
}

//  Reads the allow-list directory: a new list sorted by key, in *count_p.
//  Needs no lock (it reads files only).
static s_allowed_t *
s_read_list (const char *keys_dir, size_t *count_p)
{
    s_scan_t scan = {NULL, 0, 0};
    shoal_secure_each_cert (keys_dir, s_scan_one, &scan);
    if (scan.count > 1)
        qsort (scan.list, scan.count, sizeof (s_allowed_t), s_compare_keys);
    *count_p = scan.count;
    return scan.list;
}

//  Makes list (from s_read_list, now owned) the allow-list, read when
//  keys_dir had the times in *dir; a key in the old list and not in the
//  new one is a revocation. Both are sorted, so one walk finds them.
//  Call with s_lock held.
static void
s_install (shoal_secure_t *self, s_allowed_t *list, size_t count, const struct stat *dir)
{
    for (size_t i = 0, j = 0; self->loaded && i < self->allowed_count; i++) {
        int order = 1;
        while (j < count && (order = strcmp (list[j].key, self->allowed[i].key)) < 0)
            j++;
        if (order != 0)
            self->revoked = true;
    }
    free (self->allowed);
    self->allowed = list;
    self->allowed_count = count;
    self->dir_ctime = dir->st_ctim;
    self->dir_mtime = dir->st_mtim;
    self->loaded = true;
    self->last_scan_ms = zclock_mono ();
    self->installs++;
}

//  Whether keys_dir changed since the list was read; *dir gets its times.
//  Call with s_lock held.
static bool
s_dir_changed (shoal_secure_t *self, struct stat *dir)
{
    if (stat (self->keys_dir, dir))
        memset (dir, 0, sizeof *dir);
    return !self->loaded || dir->st_ctim.tv_sec != self->dir_ctime.tv_sec
           || dir->st_ctim.tv_nsec != self->dir_ctime.tv_nsec
           || dir->st_mtim.tv_sec != self->dir_mtime.tv_sec
           || dir->st_mtim.tv_nsec != self->dir_mtime.tv_nsec;
}

//  Reads the allow-list again when the directory changed. Call with s_lock
//  held: the ZAP handler's path, which cannot let go of the lock while it
//  uses the node; the engine's calls read without it (s_update). Until a
//  list read after a change is installed, every refresh sees the change
//  and reads for itself: a handshake never meets a list older than the
//  directory it saw.
static void
s_refresh (shoal_secure_t *self)
{
    struct stat dir;
    if (s_dir_changed (self, &dir)) {
        size_t count;
        s_allowed_t *list = s_read_list (self->keys_dir, &count);
        s_install (self, list, count, &dir);
    }
}

//  Reads the allow-list again when the directory changed (or, with
//  rescan, when S_RESCAN_MS passed since the last read, for a file
//  rewritten in place), without the lock: the engine's path, so a big
//  allow-list slows only this engine, not every node's handshakes. Call
//  without s_lock. The handler may install a change meanwhile: then its
//  list is newer, and this one is dropped.
static void
s_update (shoal_secure_t *self, bool rescan)
{
    struct stat dir;
    pthread_mutex_lock (&s_lock);
    bool due = s_dir_changed (self, &dir)
               || (rescan && zclock_mono () - self->last_scan_ms >= S_RESCAN_MS);
    uint64_t installs = self->installs;
    pthread_mutex_unlock (&s_lock);
    if (!due)
        return;
    size_t count = 0;
    s_allowed_t *list = s_read_list (self->keys_dir, &count);
    pthread_mutex_lock (&s_lock);
    if (self->installs == installs)
        s_install (self, list, count, &dir);
    else
        free (list);
    pthread_mutex_unlock (&s_lock);
}

//  Whether key is in the list as it stands. Call with s_lock held.
static bool
s_has_key (shoal_secure_t *self, const char *key)
{
    s_allowed_t wanted;
    snprintf (wanted.key, sizeof wanted.key, "%s", key);
    return self->allowed_count
           && bsearch (&wanted, self->allowed, self->allowed_count, sizeof (s_allowed_t),
                       s_compare_keys)
                  != NULL;
}

//  Answers one ZAP request.
static void
s_zap_answer (zsock_t *handler)
{
    zmsg_t *request = zmsg_recv (handler);
    if (!request)
        return;
    char *version = zmsg_popstr (request);
    char *request_id = zmsg_popstr (request);
    char *domain = zmsg_popstr (request);
    char *address = zmsg_popstr (request);
    zframe_t *identity = zmsg_pop (request);
    char *mechanism = zmsg_popstr (request);
    zframe_t *credentials = zmsg_pop (request);
    char key[SHOAL_KEY_TEXT_SIZE] = "";
    bool ok = false;
    if (version && streq (version, "1.0") && mechanism && streq (mechanism, "CURVE") && domain
        && credentials && zframe_size (credentials) == SHOAL_KEY_SIZE) {
        zmq_z85_encode (key, zframe_data (credentials), SHOAL_KEY_SIZE);
        pthread_mutex_lock (&s_lock);
        //  The last node may have gone (and the list with it) while this
        //  request waited for the lock: then nobody allows the key.
        for (shoal_secure_t *node = s_nodes ? (shoal_secure_t *) zlistx_first (s_nodes) : NULL;
             node; node = (shoal_secure_t *) zlistx_next (s_nodes))
            if (streq (node->domain, domain)) {
                s_refresh (node);
                ok = s_has_key (node, key);
                if (!ok)
                    node->refused++;
                break;
            }
        pthread_mutex_unlock (&s_lock);
    }
    zmsg_t *reply = zmsg_new ();
    zmsg_addstr (reply, "1.0");
    zmsg_addstr (reply, request_id ? request_id : "");
    zmsg_addstr (reply, ok ? "200" : "400");
    zmsg_addstr (reply, ok ? "OK" : "key not allowed");
    zmsg_addstr (reply, ok ? key : "");
    zmsg_addmem (reply, "", 0);
    zmsg_send (&reply, handler);
    zstr_free (&version);
    zstr_free (&request_id);
    zstr_free (&domain);
    zstr_free (&address);
    zstr_free (&mechanism);
    zframe_destroy (&identity);
    zframe_destroy (&credentials);
    zmsg_destroy (&request);
}

//  The handler's thread; args is the REP socket, bound already (the actor
//  takes it).
static void
s_zap_actor (zsock_t *pipe, void *args)
{
    zsock_t *handler = (zsock_t *) args;
    zsock_signal (pipe, 0);
    zpoller_t *poller = zpoller_new (pipe, handler, NULL);
    while (true) {
        void *which = zpoller_wait (poller, -1);
        if (which == handler)
            s_zap_answer (handler);
        else if (which == pipe) {
            char *command = zstr_recv (pipe);
            bool term = !command || streq (command, "$TERM");
            zstr_free (&command);
            if (term)
                break;
        }
        else
            break; //  interrupted
    }
    zpoller_destroy (&poller);
    zsock_destroy (&handler);
}

const char *
shoal_secure_error (void)
{
    return s_error;
}

bool
shoal_secure_key_valid (const char *text)
{
    if (!text || strlen (text) != SHOAL_KEY_TEXT_SIZE - 1)
        return false;
    uint8_t key[SHOAL_KEY_SIZE];
    return zmq_z85_decode (key, text) != NULL;
}

shoal_secure_t *
shoal_secure_new (const char *keys_dir, const char *cert_path, const char *name, const char *domain)
{
    s_error[0] = 0;
    if (!zsys_has_curve ()) {
        snprintf (s_error, sizeof s_error,
                  "this libzmq has no CURVE support (install libzmq5 from Debian, built "
                  "with libsodium)");
        return NULL;
    }
    struct stat info;
    if (!keys_dir || !*keys_dir || stat (keys_dir, &info) || !S_ISDIR (info.st_mode)) {
        snprintf (s_error, sizeof s_error,
                  "keys directory %s is not a directory: make it and allow the mesh's keys "
                  "with `shoal keys allow DIR CERT`",
                  keys_dir && *keys_dir ? keys_dir : "(none given)");
        return NULL;
    }
    shoal_secure_t *self = (shoal_secure_t *) zmalloc (sizeof (shoal_secure_t));
    self->keys_dir = strdup (keys_dir);
    snprintf (self->domain, sizeof self->domain, "%s", domain);
    char secret[4096];
    snprintf (secret, sizeof secret, "%s_secret", cert_path);
    bool has_public = access (cert_path, F_OK) == 0;
    bool has_secret = access (secret, F_OK) == 0;
    if (has_secret) {
        self->cert = zcert_load (cert_path);
        uint8_t zero[SHOAL_KEY_SIZE] = {0};
        if (self->cert && memcmp (zcert_secret_key (self->cert), zero, SHOAL_KEY_SIZE) == 0)
            zcert_destroy (&self->cert);
        if (!self->cert)
            snprintf (s_error, sizeof s_error,
                      "%s is not a CURVE secret certificate (make one with `shoal keys new "
                      "NAME`)",
                      secret);
    }
    else if (has_public)
        snprintf (s_error, sizeof s_error,
                  "%s exists but its secret half %s does not: restore it, or remove %s to "
                  "make a new keypair (and allow the new key)",
                  cert_path, secret, cert_path);
    else {
        self->cert = zcert_new ();
        if (self->cert) {
            zcert_set_meta (self->cert, "name", "%s", name ? name : "shoal");
            if (zcert_save (self->cert, cert_path)) {
                snprintf (s_error, sizeof s_error, "cannot write %s: %s", cert_path,
                          strerror (errno));
                zcert_destroy (&self->cert);
            }
        }
    }
    if (!self->cert) {
        if (!s_error[0])
            snprintf (s_error, sizeof s_error, "cannot make a CURVE keypair");
        free (self->keys_dir);
        free (self);
        return NULL;
    }
    s_update (self, false);
    pthread_mutex_lock (&s_lock);
    if (!s_nodes)
        s_nodes = zlistx_new ();
    //  The endpoint is bound here, so that a failure is seen; a handler
    //  being stopped by another thread may hold it for a moment: try
    //  again for a while.
    for (int attempt = 0; !s_handler && attempt < 100; attempt++) {
        zsock_t *socket = zsock_new (ZMQ_REP);
        if (socket && zsock_bind (socket, S_ZAP_ENDPOINT) == 0)
            s_handler = zactor_new (s_zap_actor, socket);
        else {
            zsock_destroy (&socket);
            pthread_mutex_unlock (&s_lock);
            zclock_sleep (10);
            pthread_mutex_lock (&s_lock);
        }
    }
    if (!s_handler)
        snprintf (s_error, sizeof s_error,
                  "cannot start the ZAP handler: another one (zauth?) is bound to %s in this "
                  "process",
                  S_ZAP_ENDPOINT);
    if (s_handler)
        zlistx_add_end (s_nodes, self);
    pthread_mutex_unlock (&s_lock);
    if (!s_handler) {
        shoal_secure_destroy (&self);
        return NULL;
    }
    return self;
}

void
shoal_secure_destroy (shoal_secure_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    shoal_secure_t *self = *self_p;
    //  The handler is stopped outside the lock: it may be waiting for the
    //  lock to answer a request, and would never read $TERM.
    zactor_t *handler = NULL;
    pthread_mutex_lock (&s_lock);
    void *handle = s_nodes ? zlistx_find (s_nodes, self) : NULL;
    if (handle)
        zlistx_delete (s_nodes, handle);
    if (s_nodes && zlistx_size (s_nodes) == 0) {
        handler = s_handler;
        s_handler = NULL;
        zlistx_destroy (&s_nodes);
    }
    pthread_mutex_unlock (&s_lock);
    zactor_destroy (&handler);
    zcert_destroy (&self->cert);
    free (self->allowed);
    free (self->keys_dir);
    free (self);
    *self_p = NULL;
}

const char *
shoal_secure_public_txt (const shoal_secure_t *self)
{
    return zcert_public_txt (self->cert);
}

const uint8_t *
shoal_secure_public_key (const shoal_secure_t *self)
{
    return zcert_public_key (self->cert);
}

void
shoal_secure_server (shoal_secure_t *self, zsock_t *socket)
{
    zsock_set_zap_domain (socket, self->domain);
    zcert_apply (self->cert, socket);
    zsock_set_curve_server (socket, 1);
}

void
shoal_secure_client (shoal_secure_t *self, zsock_t *socket, const char *server_key)
{
    zcert_apply (self->cert, socket);
    zsock_set_curve_serverkey (socket, server_key);
}

bool
shoal_secure_allowed (shoal_secure_t *self, const char *key)
{
    s_update (self, false);
    pthread_mutex_lock (&s_lock);
    bool allowed = s_has_key (self, key);
    pthread_mutex_unlock (&s_lock);
    return allowed;
}

int
shoal_secure_check (shoal_secure_t *self)
{
    s_update (self, true);
    pthread_mutex_lock (&s_lock);
    int revoked = self->revoked ? 1 : 0;
    self->revoked = false;
    pthread_mutex_unlock (&s_lock);
    return revoked;
}

uint64_t
shoal_secure_refused (shoal_secure_t *self)
{
    pthread_mutex_lock (&s_lock);
    uint64_t refused = self->refused;
    pthread_mutex_unlock (&s_lock);
    return refused;
}

int
shoal_secure_split (shoal_secure_t *self, const char *spec, char *endpoint, size_t endpoint_size,
                    char key[SHOAL_KEY_TEXT_SIZE])
{
    key[0] = 0;
    const char *hash = strchr (spec, '#');
    size_t length = hash ? (size_t) (hash - spec) : strlen (spec);
    if (length >= endpoint_size)
        return -1;
    memcpy (endpoint, spec, length);
    endpoint[length] = 0;
    if (!hash)
        return 0;
    const char *given = hash + 1;
    if (shoal_secure_key_valid (given)) {
        snprintf (key, SHOAL_KEY_TEXT_SIZE, "%s", given);
        return 0;
    }
    if (!self)
        return -1;
    int rc = -1;
    s_update (self, false);
    pthread_mutex_lock (&s_lock);
    for (size_t i = 0; i < self->allowed_count && rc; i++)
        if (streq (self->allowed[i].name, given)) {
            snprintf (key, SHOAL_KEY_TEXT_SIZE, "%s", self->allowed[i].key);
            rc = 0;
        }
    pthread_mutex_unlock (&s_lock);
    return rc;
}
