# SBIR of the SAN fork with the hybrid patchwise 2-2 network with non-local
# blocks (stages res, res, san, san; FearsomeTuna/SAN
# config/flickr/flickr_hybrid_patch_2-2_nl.yaml). Data, recipe, phases and
# evaluation as in the ResNet-26 config it inherits (read its header).
#
# The unshared parts start from the two `-from-in1k` classification runs of
# this arch; point the paths below at their checkpoints.
_base_ = ['./sbir-resnet26_2xb64_sketch-eitz-flickr25k.py']

model = dict(
    arch='hybrid_patch_2-2_nl',
    sketch_checkpoint='work_dirs/mixed-hybrid-patch-2-2-nl-from-in1k_2xb32_'
    'sketch-eitz/epoch_50.pth',
    photo_checkpoint='work_dirs/mixed-hybrid-patch-2-2-nl-from-in1k_2xb32_'
    'flickr25k-photos/epoch_50.pth',
)
