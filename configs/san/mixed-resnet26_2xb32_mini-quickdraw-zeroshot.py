# Zero-shot retrieval with the pre-activation ResNet-26 of the fork's README
# example (bash tool/monomodal_zeroshot_test.sh mini_quickdraw resnet26):
#   python tools/test.py THIS_CONFIG \
#       work_dirs/mixed-resnet26_2xb32_mini-quickdraw/epoch_50.pth
# Everything else as in the hybrid config it inherits.
_base_ = ['./mixed-hybrid-patch-2-2-nl_2xb32_mini-quickdraw-zeroshot.py']

model = dict(backbone=dict(arch='resnet26'))
