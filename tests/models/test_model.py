import pytest
import torch
from seqrec.models import BERT4Rec, ModelConfig, SASRec, SASRecConfig


def make(norm_first: bool = True, **kw) -> SASRec:
    torch.manual_seed(0)
    return SASRec(SASRecConfig(num_items=30, max_len=6, hidden_size=16, num_heads=2, norm_first=norm_first, **kw)).eval()


@pytest.mark.parametrize("norm_first", [True, False])
def test_causal_no_peeking(norm_first: bool) -> None:
    model = make(norm_first)
    a = torch.tensor([[0, 1, 2, 3, 4, 5]])
    b = torch.tensor([[0, 1, 2, 3, 9, 8]])
    ha, hb = model(a), model(b)
    torch.testing.assert_close(ha[:, :4], hb[:, :4])
    assert not torch.allclose(ha[:, 4:], hb[:, 4:])


@pytest.mark.parametrize("norm_first", [True, False])
def test_padding_does_not_change_outputs(norm_first: bool) -> None:
    model = make(norm_first)
    short = model(torch.tensor([[7, 8, 9]]))
    padded = model(torch.tensor([[0, 0, 0, 7, 8, 9]]))
    torch.testing.assert_close(padded[:, 3:], short, atol=1e-5, rtol=1e-5)
    assert torch.all(padded[:, :3] == 0)
    assert torch.isfinite(padded).all()


def test_scores_and_shapes() -> None:
    model = make()
    h = model(torch.tensor([[0, 1, 2, 3, 4, 5], [0, 0, 0, 0, 0, 6]]))
    assert h.shape == (2, 6, 16)
    all_scores = model.score_all(h[:, -1])
    assert all_scores.shape == (2, 31)
    picked = model.score_items(h[:, -1:], torch.tensor([[7], [8]]))
    torch.testing.assert_close(picked[:, 0], all_scores[torch.arange(2), torch.tensor([7, 8])])
    multi = model.score_items(h, torch.full((2, 6, 3), 4))
    torch.testing.assert_close(multi[..., 0], model.score_all(h)[..., 4])


def test_pre_and_post_ln_differ_and_bad_config() -> None:
    x = torch.tensor([[0, 1, 2, 3, 4, 5]])
    assert not torch.allclose(make(True)(x), make(False)(x))
    with pytest.raises(ValueError, match="divisible"):
        SASRec(SASRecConfig(num_items=5, hidden_size=10, num_heads=3))
    with pytest.raises(ValueError, match="num_items"):
        SASRec(SASRecConfig(num_items=0))
    with pytest.raises(ValueError, match="exceeds max_len"):
        make()(torch.ones(1, 7, dtype=torch.long))


def test_bert4rec_is_bidirectional_and_appends_a_mask() -> None:
    torch.manual_seed(0)
    model = BERT4Rec(ModelConfig(num_items=30, max_len=6, hidden_size=16, num_heads=2)).eval()
    assert model.mask_token == 31 and model.encoder.item_emb.num_embeddings == 32
    a, b = torch.tensor([[0, 1, 2, 3, 4, 5]]), torch.tensor([[0, 1, 2, 3, 9, 8]])
    assert not torch.allclose(model(a)[:, 1:4], model(b)[:, 1:4])  # earlier positions see later items
    appended = model.with_mask_appended(a)
    assert appended.tolist() == [[1, 2, 3, 4, 5, 31]]
    assert model.score_all(model(appended)[:, -1]).shape == (1, 31)  # the mask token is never scored


def test_separate_output_embeddings() -> None:
    torch.manual_seed(0)
    tied = SASRec(ModelConfig(num_items=10, max_len=4, hidden_size=8))
    separate = SASRec(ModelConfig(num_items=10, max_len=4, hidden_size=8, separate_output=True))
    assert tied.item_embeddings.data_ptr() == tied.encoder.item_emb.weight.data_ptr()
    assert separate.item_embeddings.data_ptr() != separate.encoder.item_emb.weight.data_ptr()
    h = separate(torch.tensor([[0, 1, 2, 3]]))
    torch.testing.assert_close(separate.score_all(h)[..., 5], (h * separate.output.weight[5]).sum(-1))


def test_score_items_shared_negatives_equal_per_position_scores() -> None:
    torch.manual_seed(0)
    model = SASRec(ModelConfig(num_items=30, max_len=5, hidden_size=8))
    hidden = torch.randn(3, 5, 8)
    shared = torch.randint(1, 31, (3, 1, 7))
    expanded = shared.expand(3, 5, 7)
    torch.testing.assert_close(model.score_items(hidden, shared), model.score_items(hidden, expanded))
    emb = model.item_embeddings.detach()
    got = model.score_items(hidden, shared).detach()
    assert float(got[1, 2, 4]) == pytest.approx(float(hidden[1, 2] @ emb[shared[1, 0, 4]]), abs=1e-5)


def test_the_model_masks_with_the_engines_mask_token(store) -> None:
    """One rule for the mask token: the engine's default (seqrec-core) is the model's."""
    from seqrec._core import BatchBuilder
    from seqrec.models import BERT4Rec, ModelConfig

    engine = BatchBuilder(store, 8, task="bert4rec", negatives="none").mask_token
    assert engine == BERT4Rec(ModelConfig(num_items=store.num_items)).mask_token == store.num_items + 1


def test_item_encoder_sums_its_projections_and_adds_rows_of_new_items() -> None:
    from seqrec.models.item_encoder import ItemEncoder

    torch.manual_seed(0)
    enc = ItemEncoder(rows=4, hidden_size=8, num_attributes=3, max_attributes=2, num_numeric=1, vector_dim=5,
                      id_dropout=0.0)
    attrs = torch.tensor([[0, 0], [1, 2], [3, 0], [0, 0]])
    values, present = torch.tensor([[0.0], [1.5], [0.0], [-1.0]]), torch.tensor([[0.0], [1.0], [0.0], [1.0]])
    vectors = torch.randn(4, 5)
    enc.set_features(attributes=attrs, numeric_values=values, numeric_present=present, vectors=vectors)
    with torch.no_grad():
        got = enc.features(torch.tensor([1]))[0]
        want = (enc.attribute_emb.weight[1] + enc.attribute_emb.weight[2]) / 2 \
            + enc.numeric(torch.tensor([1.5, 1.0])) + enc.vector(vectors[1])
    torch.testing.assert_close(got, want)
    # A new item with more attributes than any trained one widens every row's bag; its ID never counts.
    enc.add_rows(torch.tensor([[1, 2, 3]]), torch.tensor([[0.5]]), torch.tensor([[1.0]]), torch.randn(1, 5), 1)
    assert enc.attributes.shape == (5, 3) and enc.attributes[1].tolist() == [1, 2, 0]
    assert enc.id_weight(torch.tensor([1, 4])).flatten().tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="vectors"):
        enc.add_rows(None, None, None, torch.randn(1, 4), 1)


def test_unknown_ids_get_the_learned_stand_in_and_known_ones_do_not() -> None:
    from seqrec.models.item_encoder import ItemEncoder

    torch.manual_seed(0)
    enc = ItemEncoder(rows=4, hidden_size=8, num_attributes=3, max_attributes=2, unknown_id="learned")
    enc.set_features(attributes=torch.tensor([[0, 0], [1, 2], [3, 0], [1, 0]]))
    enc.set_unknown_ids(torch.tensor([3]))
    with torch.no_grad():
        enc.unknown.copy_(torch.randn(8))
    items = torch.tensor([0, 1, 3])
    ids = torch.randn(3, 8)
    out = enc.combine(ids, items)
    feats = enc.features(items)
    torch.testing.assert_close(out[0], torch.zeros(8))  # padding: no ID, no stand-in, no features
    torch.testing.assert_close(out[1], ids[1] + feats[1])  # a known item: its own ID
    torch.testing.assert_close(out[2], enc.unknown + feats[2])  # an unknown one: the stand-in, not its ID row
    # The stand-in is trained by the occurrences whose ID training drops.
    enc.train()
    enc.id_dropout = 0.5
    enc.combine(torch.randn(64, 8), torch.full((64,), 1)).sum().backward()
    assert enc.unknown.grad is not None and enc.unknown.grad.abs().sum() > 0
    zero = ItemEncoder(rows=4, hidden_size=8, num_attributes=3, max_attributes=2)
    assert zero.unknown is None
    with pytest.raises(ValueError, match="unknown_id"):
        ItemEncoder(rows=4, hidden_size=8, unknown_id="mean")
