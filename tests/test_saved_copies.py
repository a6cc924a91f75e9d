"""Autograd through in-place writes to saved tensors (nodes/engine/saved_copies.py), as other nodes' block patches
make them in a gradient pass (FreeU): the backward must see every saved tensor as it was when saved, also when
the allocator hands a copied tensor's address to a new one. Expected gradients are worked out by hand."""
import pytest
import torch

from aande_pack.nodes.engine.saved_copies import saved_tensors_copied_before_write


def test_a_saved_tensor_overwritten_in_place_gives_the_gradient_of_its_values_before_the_write():
    x = torch.randn(16, requires_grad=True)
    a = x * 2
    y = a.sin()  # saves a
    a.mul_(3)
    with pytest.raises(RuntimeError, match="inplace operation"):  # what plain autograd does
        y.sum().backward()
    with saved_tensors_copied_before_write():
        a = x * 2
        y = a.sin()
        a.mul_(3)
        y.sum().backward()
    torch.testing.assert_close(x.grad, 2 * torch.cos(2 * x.detach()))


def test_a_write_through_a_view_or_an_out_argument_copies_the_saved_tensor_first():
    x = torch.randn(8, 6, requires_grad=True)
    with saved_tensors_copied_before_write():
        a = x + 1
        y = a ** 2  # saves a
        a[:, :3] = 0  # a view of a, written by copy_
        b = x * 1
        z = b.exp()  # saves its output
        torch.mul(x.detach(), 0, out=z.detach())  # the output's storage written through an out= argument
        (y.sum() + z.sum()).backward()
    xd = x.detach()
    torch.testing.assert_close(x.grad, 2 * (xd + 1) + xd.exp())


def test_a_patch_that_reads_its_input_then_overwrites_it_like_freeu_v2():
    """FreeU_V2's output-block patch scales half the channels of h by a factor computed from h, in place."""
    def freeu_like(h, in_place: bool, scale=1.3):
        mean = h.mean(1, keepdim=True)
        lo, hi = mean.amin(dim=(2, 3), keepdim=True), mean.amax(dim=(2, 3), keepdim=True)
        half = h.shape[1] // 2
        scaled = h[:, :half] * ((scale - 1) * (mean - lo) / (hi - lo) + 1)
        if not in_place:
            return torch.cat([scaled, h[:, half:]], dim=1)
        h[:, :half] = scaled
        return h

    x = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    with saved_tensors_copied_before_write():
        freeu_like(x * 1, in_place=True).square().sum().backward()
    expected = torch.autograd.grad(freeu_like(x * 1, in_place=False).square().sum(), x)[0]
    torch.testing.assert_close(x.grad, expected)


def test_a_copied_tensor_never_stands_in_for_a_new_one_at_its_freed_address():
    """Each round saves a tensor, overwrites it (so it is copied) and frees it: the next round's tensor often gets
    the same Python id and address, version 0 like it. torch's allow_mutation_on_saved_tensors then hands the
    backward the old copy: with it in place of ours this test failed in 6 of 6 runs on the dev host (torch 2.13)."""
    for _ in range(100):
        x = torch.randn(64, requires_grad=True)
        with saved_tensors_copied_before_write():
            outputs = []
            for i in range(1, 21):
                a = x * i
                outputs.append(a.sin())
                a.mul_(2)
                del a
            sum(y.sum() for y in outputs).backward()
        xd = x.detach()
        torch.testing.assert_close(x.grad, sum(i * torch.cos(i * xd) for i in range(1, 21)))
