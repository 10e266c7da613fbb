// Several processes at once: every rank opens the same shards read-only while one rank holds a
// shard open for writing (HDF5 file locking must not get in the way), and the replicas' slices,
// gathered in rank order, are the global batch. Runs with any number of ranks (1 included);
// under mpirun it exercises real concurrent opens.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <mpi.h>

#include "data/dataset.h"
#include "data/sampler.h"
#include "data_test_util.h"

namespace hg {
namespace {

using namespace hg::test;

TEST(DataMpi, ReplicasOfEveryRankReadTheGlobalBatchWhileAWriterHoldsAShard) {
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);

  // Rank 0 prepares the dataset and shares its directory name.
  std::unique_ptr<TempDir> tmp;
  std::string dir(256, '\0');
  if (rank == 0) {
    tmp = std::make_unique<TempDir>();
    write_file(*tmp / "in", random_bytes(20000, 61));
    run_prep({"--input", *tmp / "in", "--output", *tmp / "ds", "--shard-bytes", "3000"});
    dir = *tmp / "ds";
    dir.resize(256, '\0');
  }
  MPI_Bcast(dir.data(), 256, MPI_CHAR, 0, MPI_COMM_WORLD);
  dir.resize(dir.find('\0'));

  // The writer: rank 0 holds a shard open read-write with HDF5's default (locking) access.
  hid_t writer = -1;
  if (rank == 0) {
    writer = H5Fopen((dir + "/train-00001.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    EXPECT_GE(writer, 0);
  }
  MPI_Barrier(MPI_COMM_WORLD);

  // A rank that fails must not leave the others waiting in a collective: agree first.
  const int seq_len = 32, micro_batch = 2, batch = 2 * micro_batch * world;
  std::unique_ptr<TokenDataset> data;
  std::unique_ptr<BatchLoader> loader;
  int ok = rank != 0 || writer >= 0;
  try {
    data = std::make_unique<TokenDataset>(dir, "train");
    loader = std::make_unique<BatchLoader>(*data, 11, seq_len, batch, world, rank, micro_batch);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "rank " << rank << ": " << e.what();
    ok = 0;
  }
  MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (!ok) {
    if (writer >= 0) H5Fclose(writer);
    loader.reset();
    data.reset();
    MPI_Barrier(MPI_COMM_WORLD);
    FAIL() << "a rank could not open the dataset";
  }
  for (int64_t step = 0; step < 3; ++step) {
    std::vector<int32_t> mine;
    for (const auto& mb : loader->load_step(step))
      mine.insert(mine.end(), mb.tokens.begin(), mb.tokens.end());
    std::vector<int32_t> gathered(mine.size() * static_cast<size_t>(world));
    MPI_Allgather(mine.data(), static_cast<int>(mine.size()), MPI_INT, gathered.data(),
                  static_cast<int>(mine.size()), MPI_INT, MPI_COMM_WORLD);
    BatchLoader whole(*data, 11, seq_len, batch, 1, 0, batch, /*prefetch=*/false);
    EXPECT_EQ(gathered, whole.load_step(step)[0].tokens) << "step " << step << " rank " << rank;
  }

  loader.reset();
  data.reset();
  MPI_Barrier(MPI_COMM_WORLD);
  if (writer >= 0) H5Fclose(writer);
  MPI_Barrier(MPI_COMM_WORLD);  // rank 0 removes the directory after everyone is done
}

}  // namespace
}  // namespace hg
