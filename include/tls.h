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
 * What is negotiated, the server choosing: GnuTLS's NORMAL set, with
 * AES-128-GCM first (its TLS 1.3 suite and TLS 1.2 PRF hash with SHA-256,
 * which the CPU computes; SHA-384 it does not, and esp-tls's mbedTLS and
 * OpenSSL both ask for AES-256-GCM-SHA384 first) and X25519 first among
 * groups (the key share OpenSSL and mbedTLS 3 send first, so no retry).
 */
#define TLS_PRIORITIES "NORMAL:%SERVER_PRECEDENCE:-CIPHER-ALL:+AES-128-GCM:" \
	"+CHACHA20-POLY1305:+AES-256-GCM:+AES-128-CCM:+AES-256-CCM:" \
	"+AES-128-CBC:+AES-256-CBC:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:" \
	"+GROUP-SECP384R1:+GROUP-SECP521R1:+GROUP-X448:+GROUP-FFDHE2048:" \
	"+GROUP-FFDHE3072:+GROUP-FFDHE4096"

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
 * connections already open keep theirs. 0, or -1 with why (the one served
 * stays).
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
