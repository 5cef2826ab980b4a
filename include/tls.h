/*
 * tls.h: otad's own HTTPS (libmicrohttpd with GnuTLS). The certificate is
 * served through a callback, so that SIGHUP can replace it for the next
 * handshake without closing a connection; and every session may be
 * resumed with a ticket (RFC 5077 and TLS 1.3), so that a device's next
 * poll costs a resumption, not a full handshake.
 */
#ifndef TLS_H
#define TLS_H

#include <stddef.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>

#include "otad.h"

struct tls;


/*
 * The certificate chain and key (PEM files) and the ticket settings:
 * ticket_key_path a file of 64 random bytes that nodes of a cluster share
 * ("" = a key of this process, made now), lifetime_s how long a ticket
 * resumes (1..604800; its key rotates with it). NULL, with why.
 */
struct tls *tls_new(const char *cert_path, const char *key_path,
    const char *ticket_key_path, unsigned lifetime_s, char *why,
    size_t whylen);

/*
 * Read the certificate and key again: the next handshake serves them,
 * connections already open keep theirs. 0, 1 when the files have not
 * changed (nothing replaced), or -1 with why (the one served stays).
 */
int tls_reload(struct tls *t, const char *cert_path, const char *key_path,
    char *why, size_t whylen);

/* A new connection's session: tickets on. */
void tls_session_started(struct tls *t, gnutls_session_t session);

/* For MHD_OPTION_HTTPS_CERT_CALLBACK: the certificate served now. */
int tls_certificate(gnutls_session_t session, const gnutls_datum_t *req_ca,
    int nreqs, const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
    gnutls_pcert_st **pcert, unsigned int *pcert_length,
    gnutls_privkey_t *pkey);

/* After the HTTP server stopped. NULL-safe. */
void tls_free(struct tls *t);

#endif
