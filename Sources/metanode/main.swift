print("metanode")
