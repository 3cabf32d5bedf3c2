# Short name of the RetinaNet config (the command users type); edit that file.
_base_ = './retinanet/retinanet_mobilemamba-b1_fpn_1x_coco.py'
