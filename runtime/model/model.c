#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/weights.h"

brt_status brt_model_open(const char *dir, const json_t *overrides, int need_tokenizer, brt_model *m, brt_err *err)
{
    memset(m, 0, sizeof *m);
    m->dir = strdup(dir);
    brt_status st = brt_config_load(dir, overrides, &m->cfg, err);
    if (st != BRT_OK)
        goto fail;
    /* tokenizer.json wins over tokenizer.model, as in transformers */
    st = brt_tokenizer_load_dir(dir, &m->tok, err);
    if (st == BRT_ERR_NOT_FOUND) {
        st = BRT_OK;
        if (need_tokenizer) {
            st = brt_errf(err, BRT_ERR_NOT_FOUND,
                          "%s/tokenizer.model: missing (and no tokenizer.json); text prompts need the model's tokenizer "
                          "(or give token ids with --input-ids)",
                          dir);
            goto fail;
        }
    } else if (st != BRT_OK) {
        goto fail;
    } else if (brt_tokenizer_vocab_size(m->tok) > m->cfg.vocab_size) {
        st = brt_errf(err, BRT_ERR_FORMAT, "%s's tokenizer has %d pieces but the model's vocab_size is %d", dir,
                      brt_tokenizer_vocab_size(m->tok), m->cfg.vocab_size);
        goto fail;
    }
    st = brt_st_set_open_dir(dir, &m->files, err);
    if (st != BRT_OK)
        goto fail;
    st = brt_weights_check_names(&m->files, &m->cfg, err);
    if (st != BRT_OK)
        goto fail;
    return BRT_OK;
fail:
    brt_model_close(m);
    return st;
}

void brt_model_close(brt_model *m)
{
    if (m->tok)
        brt_tokenizer_free(m->tok);
    brt_st_set_close(&m->files);
    free(m->dir);
    memset(m, 0, sizeof *m);
}

void brt_model_size(const brt_model *m, int64_t *params, int64_t *bytes)
{
    *params = *bytes = 0;
    for (size_t f = 0; f < m->files.n_files; f++)
        for (size_t i = 0; i < m->files.files[f]->n; i++) {
            const brt_st_tensor *t = &m->files.files[f]->tensors[i];
            if (brt_weights_ignored_name(t->name))
                continue;
            *params += t->numel;
            *bytes += (int64_t)t->nbytes;
        }
}
