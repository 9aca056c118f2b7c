from grmu.methods import UnlearnContext, register_method


@register_method("finetune")
def finetune(ctx: UnlearnContext):
    """Fine-tune (FT): cross-entropy on the remaining set only, for ``unlearn.epochs`` epochs.

    Forgetting comes only from catastrophic forgetting of samples no longer seen; with
    ``reweight: true`` the remaining set is drawn with REWEIGHT weights.
    """
    return ctx.fit(lambda epoch: [ctx.remaining_pass()])
