// The NCCL API that parallel/nccl_comm.cpp calls, for the emulated device (docs/cuda.md), over
// MPI on the emulated device's memory (nccl.cpp). NOT NCCL: collectives are blocking MPI calls
// that have finished when they return, with the arena opened for them; sends and receives are
// asynchronous on their stream (MPI_Isend / MPI_Irecv through host buffers, tag 0, so a pair's
// messages match in the order they are issued, as NCCL's do) and complete in the event queries
// and stream synchronisations that wait for them. What it checks is
// the caller's side: device pointers (a host pointer throws, as it would fault on a GPU), counts,
// roots and the order of calls across ranks.
//
// Limits of the emulation: ncclCommInitRank meets over MPI_COMM_WORLD (tags 29000-29999: the
// members send the id's drawer their ranks), so it needs MPI_Init first; group calls run each op
// at once, so a group whose sends and receives need each other would deadlock (the project groups
// only collectives).
#pragma once
#include <cstddef>

#include "cuda_runtime.h"

#define NCCL_UNIQUE_ID_BYTES 128
struct ncclUniqueId {
  char internal[NCCL_UNIQUE_ID_BYTES];
};
using ncclComm_t = struct EmulatedNcclComm*;
enum ncclResult_t {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5,
};
enum ncclDataType_t { ncclFloat32 = 7, ncclFloat = 7 };
enum ncclRedOp_t { ncclSum = 0 };

ncclResult_t ncclGetVersion(int* version);
ncclResult_t ncclGetUniqueId(ncclUniqueId* id);
ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank);
ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                           cudaStream_t stream);
ncclResult_t ncclReduce(const void* sendbuff, void* recvbuff, size_t count,
                        ncclDataType_t datatype, ncclRedOp_t op, int root, ncclComm_t comm,
                        cudaStream_t stream);
ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, int root, ncclComm_t comm,
                           cudaStream_t stream);
ncclResult_t ncclSend(const void* sendbuff, size_t count, ncclDataType_t datatype, int peer,
                      ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclRecv(void* recvbuff, size_t count, ncclDataType_t datatype, int peer,
                      ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclGroupStart();
ncclResult_t ncclGroupEnd();
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* async_error);
ncclResult_t ncclCommAbort(ncclComm_t comm);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
const char* ncclGetErrorString(ncclResult_t result);
