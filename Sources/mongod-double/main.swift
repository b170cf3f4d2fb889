print("mongod-double")
