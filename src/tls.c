/* tls.c: the certificate served, replaced on SIGHUP, and session tickets */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "log.h"
#include "tls.h"

#define CHAIN_MAX 8          /* certificates in a chain */
#define TICKET_KEY_BYTES 64  /* what gnutls_session_ticket_key_generate makes */

/* A certificate chain and its key, as handshakes are given them. */
struct creds {
	gnutls_pcert_st pcert[CHAIN_MAX];
	unsigned n;
	gnutls_privkey_t key;
	/* of the two files' bytes: a reload of the same files changes nothing */
	unsigned char digest[32];
	/*
	 * The ones served before: a handshake may still hold them, and
	 * GnuTLS does not say when it is done, so they stay until exit (a
	 * few kilobytes a renewal).
	 */
	struct creds *older;
};

struct tls {
	_Atomic(struct creds *) served;
	pthread_mutex_t reload_mu;
	gnutls_datum_t ticket_key;
	unsigned lifetime_s;
};

/* the callback has no argument of its own: one TLS setup a process */
static _Atomic(struct tls *) process_tls;

static void
creds_free(struct creds *c)
{
	unsigned i;

	while (c != NULL) {
		struct creds *older = c->older;

		for (i = 0; i < c->n; i++)
			gnutls_pcert_deinit(&c->pcert[i]);
		gnutls_privkey_deinit(c->key);
		free(c);
		c = older;
	}
}

/* digest = SHA-256(digest || data): the key's bytes after the chain's */
static int
fold_digest(unsigned char digest[32], const gnutls_datum_t *data)
{
	gnutls_hash_hd_t h;
	int rc;

	if ((rc = gnutls_hash_init(&h, GNUTLS_DIG_SHA256)) < 0)
		return rc;
	if ((rc = gnutls_hash(h, digest, 32)) < 0 ||
	    (rc = gnutls_hash(h, data->data, data->size)) < 0) {
		gnutls_hash_deinit(h, NULL);
		return rc;
	}
	gnutls_hash_deinit(h, digest);
	return 0;
}

/* The chain and key of two PEM files, checked to belong together. */
static struct creds *
creds_load(const char *cert_path, const char *key_path, char *why,
    size_t whylen)
{
	gnutls_datum_t cert = {NULL, 0}, key = {NULL, 0};
	gnutls_certificate_credentials_t check = NULL;
	struct creds *c = NULL;
	int rc;

	if ((rc = gnutls_load_file(cert_path, &cert)) < 0) {
		snprintf(why, whylen, "cannot read tls_cert '%s': %s",
		    cert_path, gnutls_strerror(rc));
		goto done;
	}
	if ((rc = gnutls_load_file(key_path, &key)) < 0) {
		snprintf(why, whylen, "cannot read tls_key '%s': %s", key_path,
		    gnutls_strerror(rc));
		goto done;
	}
	/* GnuTLS refuses a key that is not the certificate's */
	if ((rc = gnutls_certificate_allocate_credentials(&check)) < 0 ||
	    (rc = gnutls_certificate_set_x509_key_mem2(check, &cert, &key,
	    GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
		snprintf(why, whylen, "tls_cert '%s' and tls_key '%s': %s",
		    cert_path, key_path, gnutls_strerror(rc));
		goto done;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		snprintf(why, whylen, "out of memory");
		goto done;
	}
	c->n = CHAIN_MAX;
	if ((rc = gnutls_hash_fast(GNUTLS_DIG_SHA256, cert.data, cert.size,
	    c->digest)) < 0 ||
	    (rc = fold_digest(c->digest, &key)) < 0 ||
	    (rc = gnutls_pcert_list_import_x509_raw(c->pcert, &c->n, &cert,
	    GNUTLS_X509_FMT_PEM, 0)) < 0 ||
	    (rc = gnutls_privkey_init(&c->key)) < 0 ||
	    (rc = gnutls_privkey_import_x509_raw(c->key, &key,
	    GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
		snprintf(why, whylen, "tls_cert '%s': %s", cert_path,
		    gnutls_strerror(rc));
		if (rc == GNUTLS_E_SHORT_MEMORY_BUFFER)
			c->n = 0;
		creds_free(c);
		c = NULL;
	}
done:
	if (check != NULL)
		gnutls_certificate_free_credentials(check);
	if (key.data != NULL) {
		gnutls_memset(key.data, 0, key.size);
		gnutls_free(key.data);
	}
	gnutls_free(cert.data);
	return c;
}

/* The ticket key: a shared file's 64 bytes, or a new one. */
static int
ticket_key(struct tls *t, const char *path, char *why, size_t whylen)
{
	int rc;

	if (path == NULL || path[0] == '\0') {
		if ((rc = gnutls_session_ticket_key_generate(&t->ticket_key)) <
		    0) {
			snprintf(why, whylen, "cannot make a ticket key: %s",
			    gnutls_strerror(rc));
			return -1;
		}
		return 0;
	}
	if ((rc = gnutls_load_file(path, &t->ticket_key)) < 0) {
		snprintf(why, whylen, "cannot read tls_ticket_key '%s': %s",
		    path, gnutls_strerror(rc));
		return -1;
	}
	if (t->ticket_key.size != TICKET_KEY_BYTES) {
		snprintf(why, whylen, "tls_ticket_key '%s' must hold %d random "
		    "bytes (head -c %d /dev/urandom), not %u", path,
		    TICKET_KEY_BYTES, TICKET_KEY_BYTES, t->ticket_key.size);
		gnutls_memset(t->ticket_key.data, 0, t->ticket_key.size);
		gnutls_free(t->ticket_key.data);
		t->ticket_key.data = NULL;
		return -1;
	}
	return 0;
}

struct tls *
tls_new(const char *cert_path, const char *key_path,
    const char *ticket_key_path, unsigned lifetime_s, char *why,
    size_t whylen)
{
	struct tls *t;
	struct creds *c;

	if ((c = creds_load(cert_path, key_path, why, whylen)) == NULL)
		return NULL;
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		creds_free(c);
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	atomic_init(&t->served, c);
	pthread_mutex_init(&t->reload_mu, NULL);
	t->lifetime_s = lifetime_s;
	if (ticket_key(t, ticket_key_path, why, whylen) < 0) {
		tls_free(t);
		return NULL;
	}
	atomic_store(&process_tls, t);
	return t;
}

int
tls_reload(struct tls *t, const char *cert_path, const char *key_path,
    char *why, size_t whylen)
{
	struct creds *c;

	if ((c = creds_load(cert_path, key_path, why, whylen)) == NULL)
		return -1;
	pthread_mutex_lock(&t->reload_mu);
	c->older = atomic_load(&t->served);
	if (memcmp(c->digest, c->older->digest, sizeof(c->digest)) == 0) {
		/* the same files: kept, not stacked up at every reload */
		pthread_mutex_unlock(&t->reload_mu);
		c->older = NULL;
		creds_free(c);
		return 1;
	}
	atomic_store(&t->served, c);
	pthread_mutex_unlock(&t->reload_mu);
	return 0;
}

void
tls_session_started(struct tls *t, gnutls_session_t session)
{
	/* lifetime 0: no tickets, a full handshake every connection */
	if (t->lifetime_s == 0 ||
	    gnutls_session_ticket_enable_server(session, &t->ticket_key) < 0)
		return; /* served without: a full handshake next time */
	gnutls_db_set_cache_expiration(session, (int)t->lifetime_s);
}

int
tls_certificate(gnutls_session_t session, const gnutls_datum_t *req_ca,
    int nreqs, const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
    gnutls_pcert_st **pcert, unsigned int *pcert_length,
    gnutls_privkey_t *pkey)
{
	struct tls *t = atomic_load(&process_tls);
	struct creds *c;

	(void)session;
	(void)req_ca;
	(void)nreqs;
	(void)pk_algos;
	(void)pk_algos_length;
	if (t == NULL)
		return -1;
	c = atomic_load(&t->served);
	*pcert = c->pcert;
	*pcert_length = c->n;
	*pkey = c->key;
	return 0;
}

void
tls_free(struct tls *t)
{
	struct tls *expected = t;

	if (t == NULL)
		return;
	atomic_compare_exchange_strong(&process_tls, &expected, NULL);
	creds_free(atomic_load(&t->served));
	if (t->ticket_key.data != NULL) {
		gnutls_memset(t->ticket_key.data, 0, t->ticket_key.size);
		gnutls_free(t->ticket_key.data);
	}
	pthread_mutex_destroy(&t->reload_mu);
	free(t);
}
