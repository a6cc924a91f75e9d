"""placeholder until its issue lands"""


def register():
    pass
