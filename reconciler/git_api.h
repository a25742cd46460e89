/*
 * git_api.h - libgit2, opened when rolld first needs it (lazy_lib.h).
 *
 * Every libgit2 function rolld calls is a pointer in git_api, filled by
 * git_api_load(); the defines at the end send each call through it, so the
 * code reads as plain libgit2. A function used but not listed here fails
 * the build at link time (the binary does not link libgit2). Include this
 * instead of <git2.h>.
 */
#ifndef ROLLD_GIT_API_H
#define ROLLD_GIT_API_H

#include <git2.h>

#define ROLLD_GIT_FUNCTIONS(X) \
    X(git_blob_create_from_buffer) \
    X(git_blob_free) \
    X(git_blob_lookup) \
    X(git_blob_rawcontent) \
    X(git_blob_rawsize) \
    X(git_buf_dispose) \
    X(git_commit_author) \
    X(git_commit_create) \
    X(git_commit_extract_signature) \
    X(git_commit_free) \
    X(git_commit_id) \
    X(git_commit_lookup) \
    X(git_commit_lookup_prefix) \
    X(git_commit_message) \
    X(git_commit_tree) \
    X(git_commit_tree_id) \
    X(git_config_delete_multivar) \
    X(git_config_free) \
    X(git_config_get_string_buf) \
    X(git_config_iterator_free) \
    X(git_config_iterator_new) \
    X(git_config_next) \
    X(git_config_set_string) \
    X(git_credential_ssh_key_new) \
    X(git_credential_username_new) \
    X(git_credential_userpass_plaintext_new) \
    X(git_error_last) \
    X(git_error_set_str) \
    X(git_fetch_options_init) \
    X(git_graph_descendant_of) \
    X(git_libgit2_init) \
    X(git_message_prettify) \
    X(git_object_free) \
    X(git_object_id) \
    X(git_object_peel) \
    X(git_odb_exists) \
    X(git_odb_free) \
    X(git_odb_object_data) \
    X(git_odb_object_free) \
    X(git_odb_object_size) \
    X(git_odb_object_type) \
    X(git_odb_read) \
    X(git_odb_write) \
    X(git_oid_cpy) \
    X(git_oid_equal) \
    X(git_oid_fromstrn) \
    X(git_oid_tostr) \
    X(git_packbuilder_free) \
    X(git_packbuilder_insert_walk) \
    X(git_packbuilder_name) \
    X(git_packbuilder_new) \
    X(git_packbuilder_object_count) \
    X(git_packbuilder_write) \
    X(git_proxy_options_init) \
    X(git_push_options_init) \
    X(git_reference_create) \
    X(git_reference_create_matching) \
    X(git_reference_delete) \
    X(git_reference_free) \
    X(git_reference_lookup) \
    X(git_reference_name_is_valid) \
    X(git_reference_name_to_id) \
    X(git_reference_symbolic_target) \
    X(git_reference_type) \
    X(git_remote_connect) \
    X(git_remote_create_options_init) \
    X(git_remote_create_with_opts) \
    X(git_remote_disconnect) \
    X(git_remote_download) \
    X(git_remote_fetch) \
    X(git_remote_free) \
    X(git_remote_init_callbacks) \
    X(git_remote_ls) \
    X(git_remote_push) \
    X(git_remote_update_tips) \
    X(git_repository_config) \
    X(git_repository_config_snapshot) \
    X(git_repository_free) \
    X(git_repository_init_ext) \
    X(git_repository_init_options_init) \
    X(git_repository_is_bare) \
    X(git_repository_odb) \
    X(git_repository_open_bare) \
    X(git_repository_open_ext) \
    X(git_repository_path) \
    X(git_revparse_single) \
    X(git_revwalk_free) \
    X(git_revwalk_new) \
    X(git_revwalk_push_ref) \
    X(git_signature_free) \
    X(git_signature_new) \
    X(git_signature_now) \
    X(git_tree_create_updated) \
    X(git_tree_entry_byindex) \
    X(git_tree_entry_bypath) \
    X(git_tree_entry_filemode) \
    X(git_tree_entry_free) \
    X(git_tree_entry_id) \
    X(git_tree_entry_name) \
    X(git_tree_entry_type) \
    X(git_tree_entrycount) \
    X(git_tree_free) \
    X(git_tree_id) \
    X(git_tree_lookup)

#define ROLLD_GIT_SLOT(f) __typeof__(f) *f;
struct git_api {
    ROLLD_GIT_FUNCTIONS(ROLLD_GIT_SLOT)
};
#undef ROLLD_GIT_SLOT
extern struct git_api git_api;

/* Opens libgit2 and fills git_api: 0, or -ENOENT with the reason in err.
 * Not thread-safe: git_common_ready() calls it once. */
int git_api_load(char *err, size_t err_size);

#ifndef ROLLD_GIT_API_TABLE
#define git_blob_create_from_buffer (*git_api.git_blob_create_from_buffer)
#define git_blob_free (*git_api.git_blob_free)
#define git_blob_lookup (*git_api.git_blob_lookup)
#define git_blob_rawcontent (*git_api.git_blob_rawcontent)
#define git_blob_rawsize (*git_api.git_blob_rawsize)
#define git_buf_dispose (*git_api.git_buf_dispose)
#define git_commit_author (*git_api.git_commit_author)
#define git_commit_create (*git_api.git_commit_create)
#define git_commit_extract_signature (*git_api.git_commit_extract_signature)
#define git_commit_free (*git_api.git_commit_free)
#define git_commit_id (*git_api.git_commit_id)
#define git_commit_lookup (*git_api.git_commit_lookup)
#define git_commit_lookup_prefix (*git_api.git_commit_lookup_prefix)
#define git_commit_message (*git_api.git_commit_message)
#define git_commit_tree (*git_api.git_commit_tree)
#define git_commit_tree_id (*git_api.git_commit_tree_id)
#define git_config_delete_multivar (*git_api.git_config_delete_multivar)
#define git_config_free (*git_api.git_config_free)
#define git_config_get_string_buf (*git_api.git_config_get_string_buf)
#define git_config_iterator_free (*git_api.git_config_iterator_free)
#define git_config_iterator_new (*git_api.git_config_iterator_new)
#define git_config_next (*git_api.git_config_next)
#define git_config_set_string (*git_api.git_config_set_string)
#define git_credential_ssh_key_new (*git_api.git_credential_ssh_key_new)
#define git_credential_username_new (*git_api.git_credential_username_new)
#define git_credential_userpass_plaintext_new (*git_api.git_credential_userpass_plaintext_new)
#define git_error_last (*git_api.git_error_last)
#define git_error_set_str (*git_api.git_error_set_str)
#define git_fetch_options_init (*git_api.git_fetch_options_init)
#define git_graph_descendant_of (*git_api.git_graph_descendant_of)
#define git_libgit2_init (*git_api.git_libgit2_init)
#define git_message_prettify (*git_api.git_message_prettify)
#define git_object_free (*git_api.git_object_free)
#define git_object_id (*git_api.git_object_id)
#define git_object_peel (*git_api.git_object_peel)
#define git_odb_exists (*git_api.git_odb_exists)
#define git_odb_free (*git_api.git_odb_free)
#define git_odb_object_data (*git_api.git_odb_object_data)
#define git_odb_object_free (*git_api.git_odb_object_free)
#define git_odb_object_size (*git_api.git_odb_object_size)
#define git_odb_object_type (*git_api.git_odb_object_type)
#define git_odb_read (*git_api.git_odb_read)
#define git_odb_write (*git_api.git_odb_write)
#define git_oid_cpy (*git_api.git_oid_cpy)
#define git_oid_equal (*git_api.git_oid_equal)
#define git_oid_fromstrn (*git_api.git_oid_fromstrn)
#define git_oid_tostr (*git_api.git_oid_tostr)
#define git_packbuilder_free (*git_api.git_packbuilder_free)
#define git_packbuilder_insert_walk (*git_api.git_packbuilder_insert_walk)
#define git_packbuilder_name (*git_api.git_packbuilder_name)
#define git_packbuilder_new (*git_api.git_packbuilder_new)
#define git_packbuilder_object_count (*git_api.git_packbuilder_object_count)
#define git_packbuilder_write (*git_api.git_packbuilder_write)
#define git_proxy_options_init (*git_api.git_proxy_options_init)
#define git_push_options_init (*git_api.git_push_options_init)
#define git_reference_create (*git_api.git_reference_create)
#define git_reference_create_matching (*git_api.git_reference_create_matching)
#define git_reference_delete (*git_api.git_reference_delete)
#define git_reference_free (*git_api.git_reference_free)
#define git_reference_lookup (*git_api.git_reference_lookup)
#define git_reference_name_is_valid (*git_api.git_reference_name_is_valid)
#define git_reference_name_to_id (*git_api.git_reference_name_to_id)
#define git_reference_symbolic_target (*git_api.git_reference_symbolic_target)
#define git_reference_type (*git_api.git_reference_type)
#define git_remote_connect (*git_api.git_remote_connect)
#define git_remote_create_options_init (*git_api.git_remote_create_options_init)
#define git_remote_create_with_opts (*git_api.git_remote_create_with_opts)
#define git_remote_disconnect (*git_api.git_remote_disconnect)
#define git_remote_download (*git_api.git_remote_download)
#define git_remote_fetch (*git_api.git_remote_fetch)
#define git_remote_free (*git_api.git_remote_free)
#define git_remote_init_callbacks (*git_api.git_remote_init_callbacks)
#define git_remote_ls (*git_api.git_remote_ls)
#define git_remote_push (*git_api.git_remote_push)
#define git_remote_update_tips (*git_api.git_remote_update_tips)
#define git_repository_config (*git_api.git_repository_config)
#define git_repository_config_snapshot (*git_api.git_repository_config_snapshot)
#define git_repository_free (*git_api.git_repository_free)
#define git_repository_init_ext (*git_api.git_repository_init_ext)
#define git_repository_init_options_init (*git_api.git_repository_init_options_init)
#define git_repository_is_bare (*git_api.git_repository_is_bare)
#define git_repository_odb (*git_api.git_repository_odb)
#define git_repository_open_bare (*git_api.git_repository_open_bare)
#define git_repository_open_ext (*git_api.git_repository_open_ext)
#define git_repository_path (*git_api.git_repository_path)
#define git_revparse_single (*git_api.git_revparse_single)
#define git_revwalk_free (*git_api.git_revwalk_free)
#define git_revwalk_new (*git_api.git_revwalk_new)
#define git_revwalk_push_ref (*git_api.git_revwalk_push_ref)
#define git_signature_free (*git_api.git_signature_free)
#define git_signature_new (*git_api.git_signature_new)
#define git_signature_now (*git_api.git_signature_now)
#define git_tree_create_updated (*git_api.git_tree_create_updated)
#define git_tree_entry_byindex (*git_api.git_tree_entry_byindex)
#define git_tree_entry_bypath (*git_api.git_tree_entry_bypath)
#define git_tree_entry_filemode (*git_api.git_tree_entry_filemode)
#define git_tree_entry_free (*git_api.git_tree_entry_free)
#define git_tree_entry_id (*git_api.git_tree_entry_id)
#define git_tree_entry_name (*git_api.git_tree_entry_name)
#define git_tree_entry_type (*git_api.git_tree_entry_type)
#define git_tree_entrycount (*git_api.git_tree_entrycount)
#define git_tree_free (*git_api.git_tree_free)
#define git_tree_id (*git_api.git_tree_id)
#define git_tree_lookup (*git_api.git_tree_lookup)
#endif

#endif
